#!/usr/bin/perl -w
# die.pl: fails before printing any header, as a script does when its
# configuration is missing: the message goes to stderr (the server's error
# log), the browser gets the server's 500/502 page.

use strict;

open(my $fh, '<', 'data/settings.conf')
    or die "die.pl: cannot read data/settings.conf: $!\n";
print "Content-Type: text/plain\n\nnot reached\n";

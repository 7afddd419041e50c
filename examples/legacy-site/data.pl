#!/usr/bin/perl -w
# data.pl: quote number ?n= (from 1) of data/quotes.txt, the data file beside
# the script, found through FindBin wherever the site is installed. No n: the
# first; n out of range: 404; not a number: 400.

use strict;
use FindBin;
use lib "$FindBin::Bin/lib";
use Site::Util qw(parse_query read_lines error_page);

my %form = parse_query($ENV{'QUERY_STRING'});
my $n = defined $form{'n'} ? $form{'n'} : 1;
my @quotes = read_lines('quotes.txt');

if ($n !~ /^\d{1,9}$/) {
    error_page('400 Bad Request', 'n must be a number');
} elsif ($n < 1 || $n > @quotes) {
    error_page('404 Not Found', "There is no quote number $n.");
} else {
    print "Content-Type: text/plain; charset=utf-8\n\n";
    printf "Quote %d of %d: %s\n", $n, scalar(@quotes), $quotes[$n - 1];
}

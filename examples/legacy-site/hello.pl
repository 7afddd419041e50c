#!/usr/bin/perl -w
# hello.pl: greets ?name=, parsing QUERY_STRING by hand, as CGI scripts did
# before CGI.pm was everywhere. GET /cgi-bin/hello.pl?name=x prints
# "Hello, x!".

use strict;

my %form;
foreach my $pair (split /&/, $ENV{'QUERY_STRING'} || '') {
    my ($name, $value) = split /=/, $pair, 2;
    next unless defined $value;
    $value =~ tr/+/ /;
    $value =~ s/%([a-fA-F0-9][a-fA-F0-9])/pack("C", hex($1))/eg;
    $form{$name} = $value unless exists $form{$name};
}

my $name = $form{'name'};
$name = 'world' unless defined $name && $name ne '';

print "Content-Type: text/plain; charset=utf-8\n\n";
print "Hello, $name!\n";

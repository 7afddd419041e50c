#!/usr/bin/perl -w
# compute.pl: some real work per request, with a result that never changes:
#
#   ?n=N       the primes below N (default 20000, at most 1000000) by the
#              sieve of Eratosthenes: their count, sum and the largest
#   ?words=K   the K most frequent words of data/quotes.txt (default 5)
#
# compute.py prints the same bytes.

use strict;
use FindBin;
use lib "$FindBin::Bin/lib";
use Site::Util qw(parse_query read_lines error_page);

my %form = parse_query($ENV{'QUERY_STRING'});

if (exists $form{'words'}) {
    my $top = $form{'words'} eq '' ? 5 : $form{'words'};
    if ($top !~ /^\d{1,4}$/) {
        error_page('400 Bad Request', 'words must be a number');
        exit 0;
    }
    my %count;
    my $total = 0;
    foreach my $line (read_lines('quotes.txt')) {
        foreach my $word (lc($line) =~ /[a-z']+/g) {
            $count{$word}++;
            $total++;
        }
    }
    my @words = sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count;
    splice(@words, $top) if @words > $top;
    print "Content-Type: text/plain; charset=utf-8\n\n";
    printf "words: %d, distinct: %d\n", $total, scalar(keys %count);
    printf "%4d %s\n", $count{$_}, $_ foreach @words;
    exit 0;
}

my $n = defined $form{'n'} ? $form{'n'} : 20000;
if ($n !~ /^\d{1,7}$/ || $n > 1000000) {
    error_page('400 Bad Request', 'n must be a number up to 1000000');
    exit 0;
}
my @composite;
my ($count, $sum, $largest) = (0, 0, 0);
for (my $i = 2; $i < $n; $i++) {
    next if $composite[$i];
    $count++;
    $sum += $i;
    $largest = $i;
    for (my $j = $i * $i; $j < $n; $j += $i) {
        $composite[$j] = 1;
    }
}
print "Content-Type: text/plain; charset=utf-8\n\n";
print "primes below $n: $count\n";
print "sum: $sum\n";
print "largest: $largest\n";

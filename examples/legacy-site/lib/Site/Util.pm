package Site::Util;
# Helpers shared by the site's Perl scripts, loaded from lib/ beside them:
#
#   use FindBin;
#   use lib "$FindBin::Bin/lib";
#   use Site::Util qw(parse_query html_escape);
#
# Pure Perl and core modules only (Exporter, FindBin), so that it runs under
# any perl, a WASI one included.

use strict;
use Exporter;
use FindBin;
use vars qw(@ISA @EXPORT_OK $VERSION);

$VERSION   = '1.02';
@ISA       = qw(Exporter);
@EXPORT_OK = qw(parse_query url_unescape html_escape data_file read_lines
                fnv1a32_update fnv1a32_hex error_page);

# url_unescape($s): '+' is a space, %XX a byte.
sub url_unescape {
    my $s = shift;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/eg;
    return $s;
}

# parse_query($query_string): a hash of the pairs; the first value of a
# repeated name wins.
sub parse_query {
    my $query = shift;
    my %form;
    foreach my $pair (split /[&;]/, defined $query ? $query : '') {
        next if $pair eq '';
        my ($name, $value) = split /=/, $pair, 2;
        $name  = url_unescape($name);
        $value = defined $value ? url_unescape($value) : '';
        $form{$name} = $value unless exists $form{$name};
    }
    return %form;
}

sub html_escape {
    my $s = shift;
    $s =~ s/&/&amp;/g;
    $s =~ s/</&lt;/g;
    $s =~ s/>/&gt;/g;
    $s =~ s/"/&quot;/g;
    return $s;
}

# data_file($name): the path of data/$name beside the scripts, wherever the
# site lives.
sub data_file {
    my $name = shift;
    return "$FindBin::Bin/data/$name";
}

# read_lines($name): the lines of data/$name, without their newlines.
sub read_lines {
    my $name = shift;
    my $path = data_file($name);
    open(my $fh, '<', $path) or die "cannot read data/$name: $!\n";
    my @lines = <$fh>;
    close($fh);
    chomp(@lines);
    return @lines;
}

# fnv1a32_update($hash, $bytes): 32-bit FNV-1a of $bytes, continuing from
# $hash (start with 2166136261, 0x811c9dc5).
#
# hash * 16777619 (0x01000193) modulo 2**32, by 16-bit halves: no
# intermediate value reaches 2**32, so the result is the same whether this
# perl's integers have 32 or 64 bits (a product of two 32-bit values would
# become an inexact float on the former).
sub fnv1a32_update {
    my ($hash, $bytes) = @_;
    foreach my $byte (unpack('C*', $bytes)) {
        $hash ^= $byte;
        my $lo    = $hash & 0xffff;
        my $hi    = $hash >> 16;
        my $low   = $lo * 0x0193;
        my $upper = ($hi * 0x0193 + $lo * 0x0100 + ($low >> 16)) & 0xffff;
        $hash = ($upper << 16) | ($low & 0xffff);
    }
    return $hash;
}

sub fnv1a32_hex {
    my $hash = shift;
    return sprintf('%08x', $hash);
}

# error_page($status, $message): a whole CGI response with that status.
sub error_page {
    my ($status, $message) = @_;
    my $text = html_escape($message);
    print "Status: $status\r\n";
    print "Content-Type: text/html; charset=utf-8\r\n\r\n";
    print "<html><head><title>$status</title></head>\n";
    print "<body><h1>$status</h1>\n<p>$text</p></body></html>\n";
}

1;

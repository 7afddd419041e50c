package HTML::Entities;

# wcgid's stand-in for HTML::Entities, whose decoder needs the XS module
# HTML::Parser, which no WASI Perl has. CGI.pm loads it to escape HTML.
# Named entities for the HTML specials (&amp; &lt; &gt; &quot;) and for
# the apostrophe &#39;, as HTML::Entities gives them; every other character
# it is asked to encode becomes a character reference, decimal up to 255
# and hexadecimal above, as HTML::Entities writes the characters it has no
# name for (it would write &eacute; where this writes &#233;, which browsers
# read the same). decode_entities knows the same names and all numeric
# references.

use strict;
use warnings;
use Exporter 'import';

our $VERSION = '3.81';
our @EXPORT = qw(encode_entities decode_entities);
our @EXPORT_OK = qw(encode_entities_numeric %entity2char %char2entity);

our %char2entity = ('&' => '&amp;', '<' => '&lt;', '>' => '&gt;', '"' => '&quot;', "'" => '&#39;');
our %entity2char = (amp => '&', lt => '<', gt => '>', quot => '"', apos => "'");

sub _reference { ord $_[0] < 256 ? sprintf('&#%d;', ord $_[0]) : sprintf('&#x%X;', ord $_[0]) }

sub _encode {
    my ($named, $text, $unsafe) = @_;
    return undef unless defined $text;
    my $class = defined $unsafe ? qr/([$unsafe])/ : qr/([^\n\r\t !\#\$%\(-;=?-~])/;
    $text =~ s/$class/$named ? ($char2entity{$1} || _reference($1)) : sprintf('&#x%X;', ord $1)/ge;
    return $text;
}

sub encode_entities {
    my $encoded = _encode(1, $_[0], @_ > 1 ? $_[1] : undef);
    return defined wantarray ? $encoded : ($_[0] = $encoded);
}

sub encode_entities_numeric {
    my $encoded = _encode(0, $_[0], @_ > 1 ? $_[1] : undef);
    return defined wantarray ? $encoded : ($_[0] = $encoded);
}

sub decode_entities {
    my @texts = defined wantarray ? @_ : ();
    my $list = defined wantarray ? \@texts : \@_;
    for (@$list) {
        next unless defined;
        s{&(?:\#(\d+)|\#[xX]([0-9a-fA-F]+)|(\w+));?}{
            defined $1 ? chr($1) : defined $2 ? chr(hex $2) : exists $entity2char{$3} ? $entity2char{$3} : "&$3;"
        }ge;
    }
    return wantarray ? @texts : $texts[0];
}

1;

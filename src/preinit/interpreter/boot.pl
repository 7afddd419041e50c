# Evaluated once, while zeroperl's snapshot is taken: loads the modules
# named in WCGID_PRELOAD (the site's scripts' imports), then defines
# WCGID::serve, which every request's _start calls in a copy of this state.
#
# A request comes on stdin ahead of its body (wcgid's request preamble):
# u32 length of the rest, u32 argc, then argv and the environment as
# NUL-terminated strings. argv is the #! line's program and words, then the
# script's path.
package WCGID;
use strict;

for my $module (split ' ', $ENV{WCGID_PRELOAD} || '') {
    (my $file = "$module.pm") =~ s{::}{/}g;
    eval { require $file; 1 } or print STDERR "wcgid: cannot preload $module: $@";
}

# zeroperl's exit ends the instance without flushing Perl's buffers: every
# exit flushes first, the script's own included (it is compiled after the
# override below).
sub finish {
    my ($status) = @_;
    my $selected = select STDERR;
    $| = 1;    # setting it flushes
    select STDOUT;
    $| = 1;
    select $selected;
    CORE::exit($status);
}
*CORE::GLOBAL::exit = sub (;$) { finish(@_ ? $_[0] : 0) };

sub read_exactly {
    my ($want) = @_;
    my $got = '';
    while (length $got < $want) {
        my $n = sysread(STDIN, $got, $want - length $got, length $got);
        die "wcgid: the request ended inside its preamble\n" unless $n;
    }
    return $got;
}

sub serve {
    my $rest = read_exactly(unpack 'V', read_exactly(4));
    my $argc = unpack 'V', $rest;
    my @strings = split /\0/, substr($rest, 4), -1;
    pop @strings;    # after the last NUL
    my @argv = splice @strings, 0, $argc;
    %ENV = map { /\A([^=]*)=(.*)\z/s ? ($1, $2) : ($_, '') } @strings;
    my (undef, @switches) = @argv;
    my $script = pop @switches;
    $^W = 1 if grep { /\A-[a-zA-Z]*w/ } @switches;
    $0 = $script;
    @ARGV = ();
    # FindBin found $0 when the snapshot loaded it. The script's path is
    # already real (wcgid resolves symlinks before it runs a script), so
    # its directory and name are FindBin's answers, without its lookups.
    if (defined &FindBin::again) {
        ($FindBin::Bin, $FindBin::Script) = $script =~ m{\A(.*)/([^/]*)\z}s;
        $FindBin::Bin = '/' if $FindBin::Bin eq '';
        ($FindBin::RealBin, $FindBin::RealScript) = ($FindBin::Bin, $FindBin::Script);
        ($FindBin::Dir, $FindBin::RealDir) = ($FindBin::Bin, $FindBin::RealBin);
    }
    # Perl perturbs hash order with random bits of its process
    # (PERL_PERTURB_KEYS), frozen in the snapshot; insertions stir them.
    # rand is seeded afresh in every request, so requests iterate hashes
    # in differing orders, as separate perl processes do.
    { my %stir; $stir{$_} = undef for 1 .. 1 + int rand 64; }
    (my $dir = $script) =~ s{/[^/]*\z}{};
    chdir($dir eq '' ? '/' : $dir);
    unless (-r $script) {
        print STDERR "Can't open perl script \"$script\": $!\n";
        finish(2);
    }
    # A file that `do` runs starts in package main, as a script does.
    do $script;
    if ($@) {
        # As perl does for an uncaught die: the message, then errno or 255.
        print STDERR $@;
        finish(($! + 0) || 255);
    }
    finish(0);
}

1;

#!/usr/bin/perl -w
# env.pl: the CGI meta-variables a script relies on, sorted, as text:
# "NAME=value", or "NAME unset" when the server did not set it or set it
# empty (RFC 3875 section 4.1: the two are the same; fcgiwrap passes empty
# ones, wcgid and Apache's mod_cgi leave them out). Then how many bytes of
# body it read, and whether the working directory is the script's own.
# Host paths (SCRIPT_FILENAME, DOCUMENT_ROOT) are left out: they differ
# between servers that serve the same site.

use strict;

my @names = qw(
    CONTENT_LENGTH CONTENT_TYPE GATEWAY_INTERFACE HTTPS HTTP_COOKIE HTTP_HOST
    PATH_INFO QUERY_STRING REMOTE_ADDR REQUEST_METHOD REQUEST_SCHEME REQUEST_URI
    SCRIPT_NAME SERVER_NAME SERVER_PORT SERVER_PROTOCOL
);

my $body = '';
if (($ENV{'CONTENT_LENGTH'} || 0) > 0) {
    binmode(STDIN);
    read(STDIN, $body, $ENV{'CONTENT_LENGTH'});
}

print "Content-Type: text/plain\n\n";
foreach my $name (sort @names) {
    if (defined $ENV{$name} && length $ENV{$name}) {
        print "$name=$ENV{$name}\n";
    } else {
        print "$name unset\n";
    }
}
print "body: ", length($body), " bytes\n";
print "cwd: ", (-f 'env.pl' && -d 'data' ? "the script's directory" : 'elsewhere'), "\n";

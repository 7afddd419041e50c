#!/usr/bin/perl -w
# upload.pl: a file upload with CGI.pm.
#
#   GET   the upload form (multipart/form-data)
#   POST  multipart/form-data with a file field "file" (and an optional text
#         field "note"): the file's name, its size and its 32-bit FNV-1a,
#         computed here (lib/Site/Util.pm), as text
#
# CGI.pm spools the file to a temporary file (in $ENV{TMPDIR}, else /tmp)
# and upload() hands back a filehandle on it. upload.py prints the same
# bytes for the same request.

use strict;
use CGI;
use FindBin;
use lib "$FindBin::Bin/lib";
use Site::Util qw(fnv1a32_update fnv1a32_hex error_page);

my $q = CGI->new;

if ($q->request_method ne 'POST') {
    print $q->header(-type => 'text/html', -charset => 'utf-8');
    print $q->start_html(-title => 'Upload');
    print $q->start_multipart_form(-action => 'upload.pl');
    print $q->p('File: ', $q->filefield(-name => 'file'));
    print $q->p('Note: ', $q->textfield(-name => 'note'));
    print $q->p($q->submit(-value => 'Upload'));
    print $q->end_form, $q->end_html, "\n";
    exit 0;
}

my $fh = $q->upload('file');
if (!$fh) {
    error_page('400 Bad Request', $q->cgi_error || 'no file in the field "file"');
    exit 0;
}
# The name the browser gave, without any directory (old browsers on Windows
# sent C:\...).
my $name = scalar $q->param('file');
$name =~ s{^.*[/\\]}{};
my $note = scalar $q->param('note');

binmode($fh);
my ($size, $hash, $buffer) = (0, 0x811c9dc5, '');
while (my $got = read($fh, $buffer, 65536)) {
    $size += $got;
    $hash = fnv1a32_update($hash, $buffer);
}
close($fh);

print $q->header(-type => 'text/plain', -charset => 'utf-8');
print "file: $name\n";
print "size: $size\n";
print "fnv1a32: ", fnv1a32_hex($hash), "\n";
print "note: $note\n" if defined $note && $note ne '';

#!/usr/bin/perl
# redirect.pl: sends the browser to hello.pl, passing ?name= on, with an
# explicit "302 Found" and a small HTML body for browsers that do not follow
# Location. No -w and no strict, as many scripts of the time.

$name = 'redirected';
if ($ENV{'QUERY_STRING'} =~ /(?:^|&)name=([^&]*)/) {
    $name = $1;
}
# Only characters that need no escaping in a URL or in HTML go through.
$name =~ s/[^A-Za-z0-9_.~%+-]//g;
$target = "/cgi-bin/hello.pl?name=$name";

print "Status: 302 Found\r\n";
print "Location: $target\r\n";
print "Content-Type: text/html\r\n";
print "\r\n";
print "<html><head><title>302 Found</title></head>\n";
print "<body><p>This page has moved to <a href=\"$target\">$target</a>.</p></body></html>\n";

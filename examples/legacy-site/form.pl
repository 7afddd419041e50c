#!/usr/bin/perl -w
# form.pl: a guestbook-style form with CGI.pm.
#
#   GET   the form (sticky: fields keep the values of the query string), and
#         "Welcome back, NAME" when the browser sends the visitor cookie
#   POST  application/x-www-form-urlencoded: name, comment and any number of
#         topping checkboxes, echoed HTML-escaped; sets two cookies, visitor
#         (the name) and visits (one more than the browser sent)
#
# Its HTML comes from CGI.pm's own functions (start_html, textfield...), as
# scripts of the time wrote it.

use strict;
use CGI;
use CGI::Cookie;

my $q = CGI->new;
my %cookies = CGI::Cookie->fetch;
my $visitor = $cookies{'visitor'} ? $cookies{'visitor'}->value : '';
my $visits  = $cookies{'visits'}  ? $cookies{'visits'}->value  : 0;
$visits = 0 unless $visits =~ /^\d{1,6}$/;

my @toppings = qw(cheese ham mushrooms olives);

if ($q->request_method eq 'POST') {
    my $name     = $q->param('name');
    my $comment  = $q->param('comment');
    my @selected = $q->multi_param('topping');
    $name    = 'anonymous' unless defined $name && $name ne '';
    $comment = '' unless defined $comment;

    my $who   = $q->cookie(-name => 'visitor', -value => $name, -path => '/cgi-bin/');
    my $count = CGI::Cookie->new(-name => 'visits', -value => $visits + 1, -path => '/cgi-bin/');
    print $q->header(-type => 'text/html', -charset => 'utf-8', -cookie => [$who, $count]);
    print $q->start_html(-title => 'Thank you');
    print $q->h1('Thank you, ' . $q->escapeHTML($name));
    print $q->p('You wrote: ' . $q->escapeHTML($comment));
    print $q->p('Toppings: ' . (@selected ? $q->escapeHTML(join(', ', @selected)) : 'none'));
    print $q->p('Visit number ' . ($visits + 1));
    print $q->end_html, "\n";
    exit 0;
}

print $q->header(-type => 'text/html', -charset => 'utf-8');
print $q->start_html(-title => 'Guestbook');
print $q->h1($visitor ne '' ? 'Welcome back, ' . $q->escapeHTML($visitor) : 'Guestbook');
print $q->start_form(-method => 'POST', -action => 'form.pl',
    -enctype => 'application/x-www-form-urlencoded');
print $q->p('Name: ', $q->textfield(-name => 'name', -size => 30));
print $q->p('Comment: ', $q->textarea(-name => 'comment', -rows => 4, -columns => 40));
print $q->p($q->checkbox_group(-name => 'topping', -values => \@toppings));
print $q->p($q->submit(-name => 'go', -value => 'Sign'));
print $q->end_form;
print $q->end_html, "\n";

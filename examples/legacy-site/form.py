#!/usr/bin/env python3
# form.py: the guestbook of form.pl, with cgi.FieldStorage and
# http.cookies.SimpleCookie.
#
#   GET   the form, and "Welcome back, NAME" when the browser sends the
#         visitor cookie
#   POST  application/x-www-form-urlencoded: name, comment and any number of
#         topping checkboxes, echoed HTML-escaped; sets two cookies, visitor
#         (the name) and visits (one more than the browser sent)

import warnings

# The cgi module is deprecated since Python 3.11 (removed in 3.13): without
# this its import warns on stderr.
warnings.filterwarnings("ignore", category=DeprecationWarning)

import cgi  # noqa: E402
import html  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from http.cookies import SimpleCookie  # noqa: E402

TOPPINGS = ["cheese", "ham", "mushrooms", "olives"]


def page(title, body):
    return (
        "<html><head><title>%s</title></head>\n<body>\n%s\n</body></html>\n"
        % (html.escape(title), body)
    )


def main():
    form = cgi.FieldStorage()
    cookies = SimpleCookie(os.environ.get("HTTP_COOKIE", ""))
    visitor = cookies["visitor"].value if "visitor" in cookies else ""
    visits = cookies["visits"].value if "visits" in cookies else "0"
    visits = int(visits) if visits.isdigit() and len(visits) <= 6 else 0

    headers = ["Content-Type: text/html; charset=utf-8"]
    if os.environ.get("REQUEST_METHOD", "GET") == "POST":
        name = form.getfirst("name", "") or "anonymous"
        comment = form.getfirst("comment", "")
        selected = form.getlist("topping")
        out = SimpleCookie()
        out["visitor"] = name
        out["visitor"]["path"] = "/cgi-bin/"
        out["visits"] = str(visits + 1)
        out["visits"]["path"] = "/cgi-bin/"
        # One Set-Cookie line per cookie, sorted by name.
        headers.extend(morsel.output() for _, morsel in sorted(out.items()))
        body = page(
            "Thank you",
            "<h1>Thank you, %s</h1>\n<p>You wrote: %s</p>\n<p>Toppings: %s</p>\n<p>Visit number %d</p>"
            % (
                html.escape(name),
                html.escape(comment),
                html.escape(", ".join(selected)) if selected else "none",
                visits + 1,
            ),
        )
    else:
        name = form.getfirst("name", "")
        checked = set(form.getlist("topping"))
        boxes = " ".join(
            '<label><input type="checkbox" name="topping" value="%s"%s />%s</label>'
            % (t, ' checked="checked"' if t in checked else "", t)
            for t in TOPPINGS
        )
        body = page(
            "Guestbook",
            "<h1>%s</h1>\n"
            '<form method="post" action="form.py">\n'
            '<p>Name: <input type="text" name="name" value="%s" size="30" /></p>\n'
            '<p>Comment: <textarea name="comment" rows="4" cols="40"></textarea></p>\n'
            "<p>%s</p>\n"
            '<p><input type="submit" name="go" value="Sign" /></p>\n'
            "</form>"
            % (
                "Welcome back, " + html.escape(visitor) if visitor else "Guestbook",
                html.escape(name),
                boxes,
            ),
        )

    out = sys.stdout.buffer
    out.write(("\n".join(headers) + "\n\n").encode("utf-8"))
    out.write(body.encode("utf-8"))


main()

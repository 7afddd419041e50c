#!/usr/bin/env python3
# data.py: data.pl in Python: quote number ?n= (from 1) of data/quotes.txt,
# found next to the script through __file__. No n: the first; n out of
# range: 404; not a number: 400. The same bytes as data.pl.

import html
import os
import sys
from urllib.parse import parse_qs

HERE = os.path.dirname(os.path.abspath(__file__))


def error_page(status, message):
    text = html.escape(message, quote=False).replace('"', "&quot;")
    return (
        "Status: %s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<html><head><title>%s</title></head>\n"
        "<body><h1>%s</h1>\n<p>%s</p></body></html>\n" % (status, status, status, text)
    )


form = parse_qs(os.environ.get("QUERY_STRING", ""), keep_blank_values=True)
n = form.get("n", ["1"])[0]
with open(os.path.join(HERE, "data", "quotes.txt"), encoding="utf-8") as f:
    quotes = f.read().splitlines()

if not (n.isascii() and n.isdigit() and len(n) <= 9):
    response = error_page("400 Bad Request", "n must be a number")
elif not 1 <= int(n) <= len(quotes):
    response = error_page("404 Not Found", "There is no quote number %s." % n)
else:
    response = "Content-Type: text/plain; charset=utf-8\n\nQuote %d of %d: %s\n" % (
        int(n),
        len(quotes),
        quotes[int(n) - 1],
    )
sys.stdout.buffer.write(response.encode("utf-8"))

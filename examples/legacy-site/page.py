#!/usr/bin/env python3
# page.py: one script serving pages named by the path after it (PATH_INFO):
# /cgi-bin/page.py/about is a page, any other path (or none) is a
# "404 Not Found" with a body of its own.

import html
import os
import sys

PAGES = {
    "/about": (
        "About this site",
        "<p>A cgi-bin from the days when every site had one.</p>",
    ),
}

path = os.environ.get("PATH_INFO", "")
if path in PAGES:
    status = None
    title, text = PAGES[path]
else:
    status = "404 Not Found"
    title = "Not Found"
    text = "<p>No page called %s here.</p>" % html.escape(path or "(none)")

head = ""
if status:
    head += "Status: %s\n" % status
head += "Content-Type: text/html; charset=utf-8\n\n"
body = "<html><head><title>%s</title></head>\n<body><h1>%s</h1>\n%s\n</body></html>\n" % (
    title,
    title,
    text,
)
sys.stdout.buffer.write((head + body).encode("utf-8", "surrogateescape"))

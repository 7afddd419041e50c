#!/usr/bin/env python3
# upload.py: upload.pl in Python, with cgi.FieldStorage.
#
#   GET   the upload form (multipart/form-data)
#   POST  multipart/form-data with a file field "file" (and an optional text
#         field "note"): the file's name, its size and its 32-bit FNV-1a,
#         as text; the same bytes as upload.pl
#
# FieldStorage spools a file of more than 1000 bytes to a temporary file
# (tempfile: $TMPDIR, else /tmp).

import warnings

# The cgi module is deprecated since Python 3.11 (removed in 3.13): without
# this its import warns on stderr.
warnings.filterwarnings("ignore", category=DeprecationWarning)

import cgi  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

FORM = """Content-Type: text/html; charset=utf-8

<html><head><title>Upload</title></head>
<body>
<form method="post" action="upload.py" enctype="multipart/form-data">
<p>File: <input type="file" name="file" /></p>
<p>Note: <input type="text" name="note" /></p>
<p><input type="submit" value="Upload" /></p>
</form>
</body></html>
"""


def fnv1a32(data, h=0x811C9DC5):
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def main():
    out = sys.stdout.buffer
    if os.environ.get("REQUEST_METHOD") != "POST":
        out.write(FORM.encode("utf-8"))
        return
    form = cgi.FieldStorage()
    item = form["file"] if "file" in form else None
    if item is None or isinstance(item, list) or not item.filename:
        out.write(
            b"Status: 400 Bad Request\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            b"<html><head><title>400 Bad Request</title></head>\n"
            b'<body><h1>400 Bad Request</h1>\n<p>no file in the field &quot;file&quot;</p></body></html>\n'
        )
        return
    # The name the browser gave, without any directory (old browsers on
    # Windows sent C:\...).
    name = item.filename.replace("\\", "/").rsplit("/", 1)[-1]
    size, h = 0, 0x811C9DC5
    while True:
        chunk = item.file.read(65536)
        if not chunk:
            break
        size += len(chunk)
        h = fnv1a32(chunk, h)
    note = form.getfirst("note", "")
    text = "file: %s\nsize: %d\nfnv1a32: %08x\n" % (name, size, h)
    if note:
        text += "note: %s\n" % note
    out.write(b"Content-Type: text/plain; charset=utf-8\n\n" + text.encode("utf-8"))


main()

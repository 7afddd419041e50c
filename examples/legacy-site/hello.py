#!/usr/bin/env python3
# hello.py: greets ?name=, from os.environ and urllib.parse, without the cgi
# module. GET /cgi-bin/hello.py?name=x prints "Hello, x!", as hello.pl does.

import os
import sys
from urllib.parse import parse_qs

# Latin-1 maps each byte to one character and back: the name is echoed
# byte for byte, as hello.pl does, whatever its encoding.
form = parse_qs(os.environ.get("QUERY_STRING", ""), encoding="latin-1")
name = form.get("name", [""])[0] or "world"

out = sys.stdout.buffer
out.write(b"Content-Type: text/plain; charset=utf-8\n\n")
# Bytes, so that the output does not depend on the interpreter's locale.
out.write(("Hello, %s!\n" % name).encode("latin-1"))

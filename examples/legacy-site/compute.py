#!/usr/bin/env python3
# compute.py: compute.pl in Python, the same bytes:
#
#   ?n=N       the primes below N (default 20000, at most 1000000) by the
#              sieve of Eratosthenes: their count, sum and the largest
#   ?words=K   the K most frequent words of data/quotes.txt (default 5)

import os
import re
import sys
from urllib.parse import parse_qs

HERE = os.path.dirname(os.path.abspath(__file__))


def error_page(status, message):
    return (
        "Status: %s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<html><head><title>%s</title></head>\n"
        "<body><h1>%s</h1>\n<p>%s</p></body></html>\n" % (status, status, status, message)
    )


def is_number(s, digits):
    return s.isascii() and s.isdigit() and len(s) <= digits


def words(top):
    with open(os.path.join(HERE, "data", "quotes.txt"), encoding="utf-8") as f:
        found = re.findall(r"[a-z']+", f.read().lower())
    count = {}
    for word in found:
        count[word] = count.get(word, 0) + 1
    ranked = sorted(count, key=lambda w: (-count[w], w))[:top]
    lines = ["words: %d, distinct: %d\n" % (len(found), len(count))]
    lines += ["%4d %s\n" % (count[w], w) for w in ranked]
    return "Content-Type: text/plain; charset=utf-8\n\n" + "".join(lines)


def primes(n):
    composite = bytearray(max(n, 2))
    count = total = largest = 0
    for i in range(2, n):
        if composite[i]:
            continue
        count += 1
        total += i
        largest = i
        for j in range(i * i, n, i):
            composite[j] = 1
    return "Content-Type: text/plain; charset=utf-8\n\nprimes below %d: %d\nsum: %d\nlargest: %d\n" % (
        n,
        count,
        total,
        largest,
    )


form = parse_qs(os.environ.get("QUERY_STRING", ""), keep_blank_values=True)
if "words" in form:
    top = form["words"][0] or "5"
    if is_number(top, 4):
        response = words(int(top))
    else:
        response = error_page("400 Bad Request", "words must be a number")
else:
    n = form.get("n", ["20000"])[0]
    if is_number(n, 7) and int(n) <= 1000000:
        response = primes(int(n))
    else:
        response = error_page("400 Bad Request", "n must be a number up to 1000000")
sys.stdout.buffer.write(response.encode("utf-8"))

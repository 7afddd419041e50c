#!/usr/bin/env python3
"""Drives the soak: mixed requests through nginx, every answer checked.

Usage: drive.py BASE_URL TOTAL THREADS

Per 1000 requests: 5 aborted clients (connect, ask for a 3 s sleep, hang
up after 50 ms: the guest must be stopped), 2 timing-out guests (a 3 s
sleep against a 1 s timeout: 504), 10 echoes of 1 MiB (byte-exact), 50
trapping guests (502), and hello for the rest ("Hello, N!"). Prints one
line of counts as JSON; exits 1 if any answer was wrong.
"""

import http.client
import json
import os
import socket
import sys
import threading
import urllib.parse

base = urllib.parse.urlsplit(sys.argv[1])
total, threads = int(sys.argv[2]), int(sys.argv[3])
host, port = base.hostname, base.port

lock = threading.Lock()
next_index = 0
counts = {"hello": 0, "echo": 0, "trap": 0, "timeout": 0, "aborted": 0, "wrong": 0}
wrong_examples = []
body_1mib = os.urandom(1 << 20)


def take():
    global next_index
    with lock:
        if next_index >= total:
            return None
        next_index += 1
        return next_index - 1


def record(kind, ok, detail=""):
    with lock:
        if ok:
            counts[kind] += 1
        else:
            counts["wrong"] += 1
            if len(wrong_examples) < 10:
                wrong_examples.append(f"{kind}: {detail}")


def aborted_client():
    s = socket.create_connection((host, port))
    s.sendall(b"GET /cases?sleep=3000 HTTP/1.1\r\nHost: soak\r\n\r\n")
    s.settimeout(0.05)
    try:
        s.recv(1)
    except socket.timeout:
        pass
    s.close()
    record("aborted", True)


def worker():
    conn = http.client.HTTPConnection(host, port, timeout=30)
    while (i := take()) is not None:
        slot = i % 1000
        try:
            if slot < 5:
                aborted_client()
                continue
            if slot < 7:
                conn.request("GET", "/cases?sleep=3000")
                r = conn.getresponse()
                r.read()
                record("timeout", r.status == 504, f"status {r.status}")
            elif slot < 17:
                conn.request("POST", "/echo", body=body_1mib, headers={"Content-Type": "application/octet-stream"})
                r = conn.getresponse()
                got = r.read()
                record("echo", r.status == 200 and got == body_1mib, f"status {r.status}, {len(got)} bytes")
            elif slot < 67:
                conn.request("GET", "/cases?trap")
                r = conn.getresponse()
                r.read()
                record("trap", r.status == 502, f"status {r.status}")
            else:
                conn.request("GET", f"/hello?name={i}")
                r = conn.getresponse()
                got = r.read()
                want = f"Hello, {i}!\n".encode()
                record("hello", r.status == 200 and got == want, f"status {r.status}, {got[:60]!r}")
        except (OSError, http.client.HTTPException) as e:
            record("hello", False, f"request {i}: {e!r}")
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)


pool = [threading.Thread(target=worker) for _ in range(threads)]
for t in pool:
    t.start()
for t in pool:
    t.join()
counts["examples_of_wrong"] = wrong_examples
print(json.dumps(counts))
sys.exit(1 if counts["wrong"] else 0)

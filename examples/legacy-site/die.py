#!/usr/bin/env python3
# die.py: raises an exception before printing any header: the traceback goes
# to stderr (the server's error log), the browser gets the server's 500/502
# page.


def connect(database):
    raise RuntimeError("die.py: cannot connect to database %r" % database)


connect("guestbook")
print("Content-Type: text/plain\n\nnot reached")

# Run once with `python -c`, while CPython's snapshot is taken: imports the
# modules named in WCGID_PRELOAD (the site's scripts' imports), then waits
# for a request on stdin. The snapshot is taken in that first read; every
# request resumes a copy of this state there.
#
# A request comes on stdin ahead of its body (wcgid's request preamble):
# u32 length of the rest, u32 argc, then argv and the environment as
# NUL-terminated strings. argv is the #! line's program and words, then the
# script's path.
import atexit
import gc
import importlib.machinery
import io
import os
import sys
import traceback
import types
import warnings


def _wcgid_preload():
    for name in os.environ.get("WCGID_PRELOAD", "").split():
        try:
            with warnings.catch_warnings():
                # Said by the script's own import, in its request's log.
                warnings.simplefilter("ignore", DeprecationWarning)
                __import__(name)
        except Exception as e:
            print(f"wcgid: cannot preload {name}: {e!r}", file=sys.stderr)


def _wcgid_read_exactly(want):
    got = b""
    while len(got) < want:
        chunk = os.read(0, want - len(got))
        if not chunk:
            raise EOFError("wcgid: the request ended inside its preamble")
        got += chunk
    return got


def _wcgid_run(script):
    """Runs the file as `python3 script` does: in a fresh __main__ module."""
    with io.open_code(script) as f:
        code = compile(f.read(), script, "exec")
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__cached__ = None
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", script)
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def _wcgid_serve():
    rest = _wcgid_read_exactly(int.from_bytes(_wcgid_read_exactly(4), "little"))
    argc = int.from_bytes(rest[:4], "little")
    strings = rest[4:].split(b"\0")[:-1]
    argv, env = strings[:argc], strings[argc:]
    # os.environ keeps bytes under its mapping on POSIX; the C environment
    # is set too, as a process started with these variables has it.
    data = os.environ._data
    for name in data:
        os.unsetenv(name)
    data.clear()
    for entry in env:
        name, _, value = entry.partition(b"=")
        os.putenv(name, value)
        data[name] = value
    script = os.fsdecode(argv[-1])
    directory = os.path.dirname(script) or "/"
    sys.argv = [script]
    sys.path[0] = directory
    os.chdir(directory)
    if "random" in sys.modules:
        # Seeded from os.urandom: not the snapshot's state.
        sys.modules["random"].seed()
    code = 0
    try:
        _wcgid_run(script)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


_wcgid_preload()
del _wcgid_preload
# A first run of a script does work later ones reuse (5 ms of an 8 ms
# hello, measured): done here, on an empty script, for the snapshot.
_wcgid_boot = sys.modules["__main__"]
_wcgid_run("/dev/null")
sys.modules["__main__"] = _wcgid_boot
# Everything loaded so far lives as long as the instance: out of the
# collector's sight, a request's collections walk only what it made, and do
# not write to (so fault in) every page of the snapshot's objects.
gc.collect()
gc.freeze()
_wcgid_serve()

"""The ``runspan`` command's entry point: ``runspan --version`` answers before anything else
is imported (the commands need SQLAlchemy, which takes most of a start); everything else runs
the command line, then leaves without the interpreter's teardown when that is safe."""

from __future__ import annotations

import atexit
import os
import sys
import threading


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        from importlib.metadata import version  # noqa: PLC0415

        print(f"runspan, version {version('runspan')}")
        return
    from runspan.cli import main  # noqa: PLC0415

    try:
        main()
    except SystemExit as exit_:
        leave(exit_.code)
        raise
    leave(0)


def leave(code: object) -> None:
    """Exit now, skipping the teardown of every loaded module: with SQLAlchemy loaded that
    teardown is about 50 ms of a 0.3 s command, spent freeing memory the OS frees anyway.

    Everything a normal exit does that matters still happens: the exit functions run (they
    flush a demo's or an export's spans, and logging), and standard streams are flushed. When a
    non-daemon thread is still running, or a stream cannot be flushed (a closed pipe), this
    returns and the normal exit takes over, with its usual waits and messages.
    """
    if any(
        thread.is_alive() and not thread.daemon and thread is not threading.main_thread()
        for thread in threading.enumerate()
    ):
        return
    if not _flushed():
        return
    atexit._run_exitfuncs()  # runs each once: it empties the list, so a normal exit won't repeat
    _flushed()
    os._exit(_status(code))


def _flushed() -> bool:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return False
    return True


def _status(code: object) -> int:
    """The exit status ``SystemExit(code)`` gives: None is 0, an int is itself, and anything
    else has been printed to stderr by now (click prints its own messages) and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    sys.stderr.flush()
    return 1

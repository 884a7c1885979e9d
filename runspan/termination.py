"""Runs kept when the process is stopped with SIGTERM.

Containers, Kubernetes and process managers stop a process with SIGTERM, and Python's default for
it ends the process at once: no ``finally``, no ``atexit``, so the spans still queued for the
database (up to a batch interval's worth) are lost. Servers that handle SIGTERM for a graceful
shutdown, such as uvicorn, put back the handler they found when they are done and raise the
signal again, so the process still dies of it, and still without running exit handlers.

:func:`flush_before_sigterm` handles SIGTERM where nothing else does (its handler is the default):
flush runspan's sinks for a bounded time, then put the default back and raise the signal again,
so that the process dies of SIGTERM exactly as it would have, with its runs stored. A handler the
application installs, before or after, is never replaced, and servers like uvicorn call this one
after their own shutdown.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

# Within Kubernetes' default grace period (30 s) after a server's own graceful shutdown.
FLUSH_SECONDS = 5.0


class _FlushThenDie:
    """The SIGTERM handler: flush in a thread, wait a bounded time, die of SIGTERM."""

    def __init__(self, flush: Callable[[int], object], seconds: float) -> None:
        self.flush = flush
        self.seconds = seconds

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        # Default first: a second SIGTERM, or one raised below, ends the process at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            # A thread, not a call: this handler runs between two bytecodes of the main thread,
            # which may hold a lock the flush needs; the wait stays bounded either way.
            worker = threading.Thread(
                target=self.flush,
                args=(int(self.seconds * 1000),),
                name="runspan-sigterm-flush",
                daemon=True,
            )
            worker.start()
            worker.join(self.seconds)
        finally:
            signal.raise_signal(signal.SIGTERM)


def flush_before_sigterm(flush: Callable[[int], object], seconds: float = FLUSH_SECONDS) -> bool:
    """Call ``flush(timeout_millis)`` when the process gets SIGTERM, if nothing else handles it.

    Returns whether the handler was installed: not off the main thread (Python allows signal
    handlers only there) and not where SIGTERM already has a handler, which is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, _FlushThenDie):
        return True
    if current is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _FlushThenDie(flush, seconds))
    return True

"""Background work in slices of a millisecond, so that it never stalls the application.

A thread that runs Python keeps the GIL until another thread has waited a switch interval
(5 ms by default) for it. A writer batch of 500 spans is 10-20 ms of Python: without pauses, a
web app's event loop, waiting for the GIL, stalls for whole switch intervals while it runs, and
the requests in flight wait with it. The exporters call :meth:`TimeSlices.pause_if_due` between
small steps (a span's row, a statement of rows, a request of spans); every millisecond of work
it lets go of the GIL (``time.sleep(0)``), and a waiting thread takes it at once.

When the exporter's queue is filling up, pausing would trade spans for latency: then
``behind()`` says so, and the work runs in the interpreter's own switch intervals, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# The most background work between two pauses, in seconds (targets: under 2 ms of stall).
DEFAULT_SLICE_SECONDS = 0.0005


def _never() -> bool:
    return False


class TimeSlices:
    """Pauses a background thread every ``seconds`` of work, unless it is ``behind()``.

    One per exporter, used under the exporter's lock (one thread at a time).

    Attributes:
        behind: returns ``True`` while the work must not pause (its queue is filling up); the
            span processor that owns the exporter sets it.
        longest: the longest stretch of work between two pauses so far, in seconds of the
            thread's CPU time (what the GIL was held for, at most): what benchmarks report.
    """

    def __init__(self, seconds: float = DEFAULT_SLICE_SECONDS) -> None:
        if not seconds > 0:
            raise ValueError(f"seconds={seconds!r}: use a positive number of seconds")
        self.seconds = seconds
        self.behind: Callable[[], bool] = _never
        self.longest = 0.0
        self._since = time.perf_counter()
        self._cpu_since = time.thread_time()

    @contextmanager
    def working(self) -> Iterator[None]:
        """A stretch of work on this thread, from its start to its end or its first pause."""
        self.start()
        try:
            yield
        finally:
            self.end()

    def start(self) -> None:
        """Begin a stretch of work (after waiting for it)."""
        self._since = time.perf_counter()
        self._cpu_since = time.thread_time()

    def pause_if_due(self) -> None:
        """Let other threads run if this stretch of work has lasted a slice."""
        if time.perf_counter() - self._since < self.seconds:
            return
        self.end()
        if not self.behind():
            time.sleep(0)  # gives up the GIL: a thread waiting for it runs now
        self.start()

    def end(self) -> None:
        """End a stretch of work (before waiting, or when the work is done)."""
        worked = time.thread_time() - self._cpu_since
        self.longest = max(self.longest, worked)

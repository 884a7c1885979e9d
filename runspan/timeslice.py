"""Background work in slices of half a millisecond, so that it never stalls the application.

A thread that runs Python keeps the GIL until another thread has waited a switch interval
(5 ms by default) for it. A writer batch of 500 spans is 10-20 ms of Python: without pauses, a
web app's event loop, waiting for the GIL, stalls for whole switch intervals while it runs, and
the requests in flight wait with it. The exporters call :meth:`TimeSlices.pause_if_due` between
small steps (a span's row, a statement of rows, a request of spans); after each half
millisecond of work it lets go of the GIL (``time.sleep(0)``, which also sleeps the timer slack,
about 60 us, long enough for a waiting thread to take it). The slices are short enough that the
two exporters' slices back to back stay well under the 2 ms aimed at.

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
    """

    def __init__(self, seconds: float = DEFAULT_SLICE_SECONDS) -> None:
        if not seconds > 0:
            raise ValueError(f"seconds={seconds!r}: use a positive number of seconds")
        self.seconds = seconds
        self.behind: Callable[[], bool] = _never
        self._since = time.perf_counter()

    @contextmanager
    def working(self) -> Iterator[None]:
        """A stretch of work on this thread: its first slice starts now."""
        self._since = time.perf_counter()
        yield

    def pause_if_due(self) -> None:
        """Let other threads run if this stretch of work has lasted a slice."""
        if time.perf_counter() - self._since < self.seconds:
            return
        if not self.behind():
            time.sleep(0)  # gives up the GIL: a thread waiting for it runs now
        self._since = time.perf_counter()

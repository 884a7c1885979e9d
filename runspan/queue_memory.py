"""The memory runspan's span queues hold, bounded in bytes.

The queues are bounded in spans, but a span weighs what its content does: 16,384 spans with
1 MB inputs are 16 GB. One :class:`QueueMemory` is shared by a provider's SQL writer and OTLP
exporter. It counts each queued span once, from its end until the last queue has let it go (a
weak reference's callback says when). Over the budget, the content of the oldest spans still
waiting is cut to previews, with a marker saying so (in SQL too), before any run is dropped; a
new span is dropped only when every waiting span is cut already and it still does not fit.
What was cut or dropped is counted, and logged once a minute.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from collections.abc import Mapping

from opentelemetry.sdk.trace import ReadableSpan

from runspan.attributes import (
    INPUT_MESSAGES,
    INPUT_VALUE,
    METADATA,
    OUTPUT_MESSAGES,
    OUTPUT_VALUE,
    RETRIEVAL_DOCUMENTS,
    RETRIEVAL_QUERY,
    SYSTEM_INSTRUCTIONS,
    TOOL_CALL_ARGUMENTS,
    TOOL_CALL_RESULT,
    TOOL_DEFINITIONS,
)
from runspan.exporters.previews import DEFAULT_PREVIEW_CHARS, previewed_attributes
from runspan.logs import RateLimitedLog

DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
MIN_QUEUE_BYTES = 1024 * 1024
MAX_QUEUE_BYTES_ENV = "RUNSPAN_MAX_QUEUE_BYTES"
# What the marker of content cut here says of the whole value.
CUT_NOTE = "over runspan's queue memory budget"


# The attributes that carry a run's content: what makes a span big. The rest of a span (its ids,
# times, names, counts and the SDK's objects) is counted as a fixed size.
CONTENT_ATTRIBUTES = (
    INPUT_VALUE,
    OUTPUT_VALUE,
    INPUT_MESSAGES,
    OUTPUT_MESSAGES,
    SYSTEM_INSTRUCTIONS,
    TOOL_DEFINITIONS,
    TOOL_CALL_ARGUMENTS,
    TOOL_CALL_RESULT,
    RETRIEVAL_QUERY,
    RETRIEVAL_DOCUMENTS,
    METADATA,
)
# Measured with tracemalloc: a finished span of a small chain holds about 1 KB with its short
# content. Counted higher, the budget would bind before the queues' span limits even for spans
# with no content (64 MiB at 2 KiB is the SQL writer's 32,768 spans), dropping runs a slow
# moment of the writer would have caught up.
_SPAN_BYTES = 1024


def span_bytes(span: ReadableSpan) -> int:
    """An estimate of the memory ``span`` holds: its content's strings (a character is a byte
    in ASCII, up to 4 otherwise), and a fixed size for the rest. Cheap: it runs on the
    application's thread for every span."""
    attributes = span.attributes or {}
    size = _SPAN_BYTES
    for key in CONTENT_ATTRIBUTES:
        value = attributes.get(key)
        if type(value) is str:
            size += len(value) if value.isascii() else 4 * len(value)
    return size


class _Charge(weakref.ref):  # type: ignore[type-arg]
    """A queued span's weak reference, with the bytes it is counted for."""

    __slots__ = ("cut", "key", "size")

    key: int
    size: int
    cut: bool


class QueueMemory:
    """At most ``limit`` bytes (estimated) of spans waiting in the queues that share it.

    Args:
        limit: the budget in bytes; at least 1 MiB.
        preview_chars: how much of a long value is kept when content is cut.

    Raises:
        ValueError: a limit under 1 MiB, or not a whole number.
    """

    def __init__(
        self, limit: int = DEFAULT_MAX_QUEUE_BYTES, preview_chars: int = DEFAULT_PREVIEW_CHARS
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < MIN_QUEUE_BYTES:
            raise ValueError(
                f"max_queue_bytes={limit!r}: use a whole number of bytes, at least"
                f" {MIN_QUEUE_BYTES:,} (1 MiB); the default is {DEFAULT_MAX_QUEUE_BYTES:,}"
            )
        self.limit = limit
        self.preview_chars = preview_chars
        self._held = 0
        #: Spans whose content was cut to previews, and spans dropped, since the start.
        self.cut = 0
        self.dropped = 0
        self._lock = threading.RLock()
        # The counted spans by id(span), oldest first: those still whole, and those cut.
        self._whole: dict[int, _Charge] = {}
        self._cut: dict[int, _Charge] = {}
        # The span dropped last: the other queue is asked about it next, and drops it too.
        self._last_dropped: weakref.ref[ReadableSpan] | None = None
        self._log = RateLimitedLog()
        # The charges of spans gone, settled under the lock by the next admit. The weak
        # references' callbacks only append here: they run in the writer's thread as its batch
        # is let go, and taking the lock there, against 32 app threads taking it per span,
        # stalled the writer until its queue overflowed.
        self._gone: collections.deque[_Charge] = collections.deque()
        self._on_release = self._gone.append

    def admit(self, span: ReadableSpan) -> bool:
        """Count ``span``, once whichever queue asks first; ``False``: drop it, it does not fit
        even with every waiting span's content cut."""
        key = id(span)
        counted = self._whole.get(key) or self._cut.get(key)
        if counted is not None and counted() is span:  # the other queue took it already
            return True
        dropped = self._last_dropped
        if dropped is not None and dropped() is span:
            return False
        size = span_bytes(span)
        with self._lock:
            self._settle()
            cut_now = False
            if self._held + size > self.limit:
                size, cut_now = self._make_room(size, span)
                if self._held + size > self.limit:
                    self.dropped += 1
                    self._last_dropped = weakref.ref(span)
                    self._report()
                    return False
                self._report()  # after the counts: the line is logged once a minute at most
            charge = _Charge(span, self._on_release)
            charge.key, charge.size, charge.cut = key, size, cut_now
            (self._cut if charge.cut else self._whole)[key] = charge
            self._held += size
            return True

    @property
    def held(self) -> int:
        """Bytes counted now."""
        with self._lock:
            self._settle()
            return self._held

    def _settle(self) -> None:
        """Free the bytes of the spans gone (every queue has let them go). Under the lock."""
        gone = self._gone
        while gone:
            charge = gone.popleft()
            key = charge.key
            for counted in (self._whole, self._cut):
                if counted.get(key) is charge:
                    del counted[key]
            self._held -= charge.size

    def _make_room(self, size: int, span: ReadableSpan) -> tuple[int, bool]:
        """Cut the oldest waiting content, then the new span's, until ``size`` fits; the new
        span's size then, and whether it was cut. Under the lock."""
        whole, cut = self._whole, self._cut
        while self._held + size > self.limit and whole:
            key, charge = next(iter(whole.items()))
            del whole[key]
            waiting = charge()
            if waiting is None:  # going: its callback comes
                continue
            smaller = self._cut_content(waiting)
            self._held -= charge.size - smaller
            charge.size, charge.cut = smaller, True
            cut[key] = charge
            del waiting
        cut_now = self._held + size > self.limit
        if cut_now:
            size = self._cut_content(span)
        return size, cut_now

    def _cut_content(self, span: ReadableSpan) -> int:
        """Replace ``span``'s long values by previews; its size now."""
        found = span.attributes
        previewed = previewed_attributes(found, self.preview_chars, CUT_NOTE, stored=True)
        if previewed is not found:
            span._attributes = previewed  # what .attributes reads
            self.cut += 1
        return span_bytes(span)

    def _report(self) -> None:
        self._log.log(
            "over",
            f"runspan's span queues are over their memory budget ({self.limit:,} bytes): the"
            " database or the OTLP receiver is slower than the app makes runs. So far the"
            f" content of {self.cut} runs was cut to previews and {self.dropped} runs were"
            f" dropped. Raise max_queue_bytes / {MAX_QUEUE_BYTES_ENV}, or find why the sink is"
            " slow.",
        )


def queue_memory(
    max_queue_bytes: int | None = None, environ: Mapping[str, str] = os.environ
) -> QueueMemory:
    """The budget ``runspan.configure()`` gives its queues: ``max_queue_bytes``, else
    ``RUNSPAN_MAX_QUEUE_BYTES``, else 64 MiB.

    Raises:
        ValueError: a bad value, naming the argument or the variable it came from.
    """
    if max_queue_bytes is not None:
        return QueueMemory(max_queue_bytes)
    raw = environ.get(MAX_QUEUE_BYTES_ENV, "").strip()
    if not raw:
        return QueueMemory()
    if not raw.isdigit() or int(raw) < MIN_QUEUE_BYTES:
        raise ValueError(
            f"{MAX_QUEUE_BYTES_ENV}={raw!r}: use a whole number of bytes, at least"
            f" {MIN_QUEUE_BYTES:,} (1 MiB); the default is {DEFAULT_MAX_QUEUE_BYTES:,}"
        )
    return QueueMemory(int(raw))

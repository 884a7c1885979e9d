"""The SDK's batch span processor, quiet and cheap when its queue is full.

A full queue means the sink (a slow database, an unreachable collector) is behind. Recent SDKs
log a warning for every span dropped then, on the application's thread: in a busy app that is
thousands of log lines a second, on the path runspan promises to keep cheap. Here a full queue
drops the span with a counter, and one line per minute says how many were dropped.
"""

from __future__ import annotations

import collections
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from runspan.logs import RateLimitedLog
from runspan.queue_memory import QueueMemory
from runspan.timeslice import TimeSlices

# The batching of runspan's processors, SQL and OTLP alike. A batch every second: the most a
# crash can lose, and how long a finished chain waits for Jaeger (the SDK's default is 5 s).
SCHEDULE_DELAY_MILLIS = 1000
# Room for bursts while the sink catches up: the SDK's default of 2,048 spans drops spans of a
# burst of 500 chains.
MAX_QUEUE_SIZE = 16_384
# Spans per batch, SQL and OTLP alike: the worker starts a batch as soon as this many wait. A
# queued span is a handful of objects the garbage collector tracks; while a thousand wait for
# the next second's batch, every young collection finds them alive and moves them on, and the
# interpreter's full collections (40-130 ms of a web app's latency, all threads stopped) came
# three to six times as often as without runspan. 64 spans stay under the 700 new objects that
# start a young collection, so they are written before one finds them.
MAX_EXPORT_BATCH_SIZE = 64
# A queue longer than BEHIND_AFTER spans (or a quarter of a smaller queue) is behind: a burst, a
# slow sink, or a writer starved of the GIL by a busy app. Its exporter then stops pausing for the
# app (runspan.timeslice), and writes batches of up to CATCH_UP_BATCH_SIZE, the fewest
# transactions (the writer alone, on SQLite: 26,000 spans/s in batches of 64 with its pauses,
# 46,000 in batches of 1,024). Its spans have waited already; with pauses, among 32 busy threads
# the writer waited its turn for the GIL after every slice, and its queue overflowed. A web app
# at 200 requests/s keeps its queues far shorter.
BEHIND_AFTER = 4 * MAX_EXPORT_BATCH_SIZE
CATCH_UP_BATCH_SIZE = 1024
# The SQL writer's queue is twice that: SQL is the record runspan promises to keep whole, and its
# writer thread, starved of the GIL by a busy app (32 threads of runs), fell that far behind.
STORAGE_MAX_QUEUE_SIZE = 2 * MAX_QUEUE_SIZE


def _queue_and_limit(processor: BatchSpanProcessor) -> tuple[collections.deque[Any], int] | None:
    """The processor's queue and its size limit (SDK internals: ``None`` if they moved, and
    then the SDK's own handling applies)."""
    inner = getattr(processor, "_batch_processor", None)
    queue = getattr(inner, "_queue", None)
    limit = getattr(inner, "_max_queue_size", None)
    if isinstance(queue, collections.deque) and isinstance(limit, int):
        return queue, limit
    return None


def _batch_sizing(processor: BatchSpanProcessor) -> Any | None:
    """The SDK's batching object, whose ``_max_export_batch_size`` its worker reads before each
    batch (``None`` if this SDK has no such thing: batches then keep their size)."""
    inner = getattr(processor, "_batch_processor", None)
    return inner if isinstance(getattr(inner, "_max_export_batch_size", None), int) else None


class QuietBatchSpanProcessor(BatchSpanProcessor):
    """A ``BatchSpanProcessor`` that drops spans silently but counted when its queue is full.

    Args:
        sink: names the destination in the log line ("the database", "OTLP to ...").
        memory: the byte budget this queue shares with the provider's other queues (``None``:
            bounded in spans only).
        Other arguments are the SDK's.
    """

    def __init__(
        self,
        span_exporter: SpanExporter,
        *args: Any,
        sink: str,
        memory: QueueMemory | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(span_exporter, *args, **kwargs)
        self._sink = sink
        self.memory = memory
        self._queue_limit = _queue_and_limit(self)
        self._sizing = _batch_sizing(self)
        found = self._queue_limit
        self._behind_after = min(BEHIND_AFTER, found[1] // 4) if found is not None else 0
        if self._sizing is not None and found is not None:
            self._batch_size: int = self._sizing._max_export_batch_size
            # Never more than the queue holds: the SDK refuses a batch larger than its queue.
            self._catch_up_size = min(max(CATCH_UP_BATCH_SIZE, self._batch_size), found[1])
        self._log = RateLimitedLog()
        self.dropped = 0
        slices = getattr(span_exporter, "slices", None)
        if isinstance(slices, TimeSlices):
            slices.behind = self.behind

    def _admitted(self, memory: QueueMemory, span: ReadableSpan) -> bool:
        try:
            return memory.admit(span)
        except Exception:  # on the app's thread: a fault here queues the span, never raises
            self._log.exception("memory", "runspan: could not count a span's bytes; queued it")
            return True

    def behind(self) -> bool:
        """Whether the queue is filling up: its exporter then works without pausing."""
        found = self._queue_limit
        return found is not None and len(found[0]) > self._behind_after

    def _size_batches(self, queued: int) -> None:
        """Small batches while the sink keeps up, large ones while it catches up (the worker
        reads the size before each batch; one attribute written, on the app's thread)."""
        sizing = self._sizing
        if sizing is not None:
            size = self._catch_up_size if queued > self._behind_after else self._batch_size
            if sizing._max_export_batch_size != size:
                sizing._max_export_batch_size = size

    def queue_length(self) -> int | None:
        """How many spans are queued (``None`` if this SDK's queue cannot be seen)."""
        found = self._queue_limit
        return len(found[0]) if found is not None else None

    def on_end(self, span: ReadableSpan) -> None:
        memory = self.memory
        if memory is not None and span.end_time is not None and not self._admitted(memory, span):
            return  # counted and logged by the budget
        found = self._queue_limit
        if found is not None and len(found[0]) >= found[1]:
            self.dropped += 1  # a lost update under races only miscounts; it never raises
            self._log.log(
                "queue-full",
                f"{self._sink} is behind: its queue of {found[1]} spans is full and new spans"
                f" are dropped ({self.dropped} so far)",
            )
            return
        if found is not None:
            self._size_batches(len(found[0]))
        super().on_end(span)

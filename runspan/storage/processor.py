"""The storage span processor: the SDK's batching in front of the SQL exporter.

:class:`StorageSpanProcessor` is a ``BatchSpanProcessor`` (bounded queue, background thread,
safe across fork) that queues each span when it ends, and notes the spans still open so that
every batch also writes the runs open at that moment as ``running``.
"""

from __future__ import annotations

import weakref

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span
from sqlalchemy import URL

from runspan.batching import (
    MAX_EXPORT_BATCH_SIZE,
    SCHEDULE_DELAY_MILLIS,
    STORAGE_MAX_QUEUE_SIZE,
    QuietBatchSpanProcessor,
)
from runspan.queue_memory import QueueMemory
from runspan.storage.engine import safe_url
from runspan.storage.exporter import SqlSpanExporter
from runspan.storage.feedback import FeedbackQueue
from runspan.storage.open_spans import DEFAULT_MAX_OPEN_SPANS, OpenSpans

# The processors made in this process and not shut down, oldest first (runspan.feedback()
# writes through the newest when runspan.configure() made none).
_live: list[weakref.ref[StorageSpanProcessor]] = []


def live_processors() -> list[StorageSpanProcessor]:
    return [processor for ref in _live if (processor := ref()) is not None]


# A batch (a transaction: its commit and trace totals are a fixed cost) as soon as 64 spans wait:
# see runspan.batching.
DEFAULT_MAX_EXPORT_BATCH_SIZE = MAX_EXPORT_BATCH_SIZE


class StorageSpanProcessor(QuietBatchSpanProcessor):
    """Stores every span in SQL: add it to any SDK ``TracerProvider``.

    ``runspan.configure()`` adds one; on a provider of your own::

        provider.add_span_processor(StorageSpanProcessor("sqlite:///runs.db"))

    Args:
        database_url: where; else ``RUNSPAN_DATABASE_URL``, else ``sqlite:///runspan.db``.
        exporter: a :class:`SqlSpanExporter` to use instead of a URL.
        record_running: write the runs open when a batch is written as ``running``.
        schedule_delay_millis, max_queue_size, max_export_batch_size: the SDK's batching.
        max_open_spans: the most open spans tracked for their running rows.
        memory: the byte budget of the queue (``runspan.configure()`` shares one between the
            writer and OTLP); by default one of 64 MiB of its own.
        retention_days: remove runs older than this many days (see :class:`SqlSpanExporter`).
    """

    def __init__(
        self,
        database_url: str | URL | None = None,
        *,
        exporter: SqlSpanExporter | None = None,
        record_running: bool = True,
        schedule_delay_millis: float = SCHEDULE_DELAY_MILLIS,
        max_queue_size: int = STORAGE_MAX_QUEUE_SIZE,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
        max_open_spans: int = DEFAULT_MAX_OPEN_SPANS,
        memory: QueueMemory | None = None,
        retention_days: float | None = None,
    ) -> None:
        open_spans = OpenSpans(max_open_spans)  # checked before a database is touched
        self.exporter = (
            exporter
            if exporter is not None
            else SqlSpanExporter(database_url, retention_days=retention_days)
        )
        self.exporter.open_spans = open_spans
        self._record_running = record_running
        self._open = open_spans
        super().__init__(
            self.exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
            sink=f"runspan's writer to {safe_url(self.exporter.engine.url)}",
            memory=memory if memory is not None else QueueMemory(),
        )
        #: Feedback on runs (``runspan.feedback()``), written beside the spans.
        self.feedback = FeedbackQueue(self.exporter.write_feedback)
        _live.append(weakref.ref(self))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # Only noted here: each batch reads what is open when it is written. Queueing every
        # span at its start as well doubled the queue's traffic and the writer's work.
        if not self._record_running:
            return
        self._open.started(span)
        if not self.queue_length():
            # Nothing is queued (or this SDK's queue cannot be seen), so no batch may come for
            # a while: the SDK's worker writes only when something is queued. Queueing this
            # span means the runs open now are written within a flush interval, even in a
            # quiet app.
            super().on_end(span)

    def on_end(self, span: ReadableSpan) -> None:
        self._open.ended(span)
        super().on_end(span)

    def force_flush(self, timeout_millis: int | None = 30_000) -> bool:
        """Returns when every span ended so far is in the database, and those still open are
        in it as running (``False`` if it is not reachable: those rows stay buffered and are
        retried)."""
        queued = super().force_flush(timeout_millis)
        flushed = self.exporter.force_flush()
        seconds = (timeout_millis or 30_000) / 1000
        return self.feedback.flush(seconds) and flushed and queued

    def shutdown(self) -> None:
        self.feedback.close()  # before the writer lets go of the database
        _live[:] = [ref for ref in _live if ref() not in (None, self)]
        super().shutdown()  # type: ignore[no-untyped-call]

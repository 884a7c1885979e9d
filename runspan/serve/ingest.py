"""Ingest: OTLP requests into the database, acknowledged only once written.

Each request's spans go through the same row builder and writer as an app's own
(:class:`~runspan.storage.SqlSpanExporter`), together with those of the requests waiting at the
same moment (one transaction for all of them), and each request is answered after its rows are
committed: what a client was told is stored, is. When the database
is unreachable, or more requests are waiting to write than ``max_waiting`` allows, the answer is
OTLP's retryable "busy" (the client's exporter retries with backoff) instead of a queue that
grows or a drop after the fact. Rows are upserted by trace and span id, so a retried request
never stores a span twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from runspan.serve.otlp_spans import decode
from runspan.storage import SqlSpanExporter

# Requests allowed to wait for the writer at once, beyond the one writing.
DEFAULT_MAX_WAITING = 8
# How long a request waits for its turn before it is told to come back later: short, since the
# client's exporter backs off and retries, and a waiting request holds a server thread.
ADMISSION_SECONDS = 1.0
# What a busy answer asks the client to wait, in seconds (HTTP's Retry-After).
RETRY_AFTER_SECONDS = 1


class Busy(Exception):
    """The writer cannot take this request now: the client should retry later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Waiting:
    """A request's spans waiting for the writer, and what became of them."""

    spans: list[ReadableSpan]
    done: bool = False
    result: SpanExportResult = SpanExportResult.FAILURE


@dataclass(frozen=True)
class Accepted:
    """What happened to a request: spans stored, and spans rejected with the reasons."""

    stored: int
    rejected: int
    message: str


class Ingest:
    """Writes OTLP trace requests into a database, one acknowledged request at a time."""

    def __init__(self, writer: SqlSpanExporter, *, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.writer = writer
        # One slot per request allowed in (writing or waiting to): beyond them, busy.
        self._slots = threading.BoundedSemaphore(max_waiting + 1)
        self._closed = False
        self._turn = threading.Condition()
        self._writing = False
        self._waiting: list[_Waiting] = []

    def accept(self, request: ExportTraceServiceRequest) -> Accepted:
        """Store a request's spans; raises :class:`Busy` when they cannot be stored now."""
        decoded = decode(request)
        if not decoded.spans:
            return Accepted(0, decoded.rejected, "; ".join(decoded.reasons))
        if self._closed:
            raise Busy("runspan serve is stopping")
        if not self._slots.acquire(timeout=ADMISSION_SECONDS):
            raise Busy("the database writer is behind; retry later")
        try:
            result = self._write_together(decoded.spans)
        finally:
            self._slots.release()
        if result is not SpanExportResult.SUCCESS:
            # Kept in the writer's buffer and retried there too; the client's retry is an
            # upsert of the same rows.
            raise Busy("the database is unreachable; retry later")
        return Accepted(len(decoded.spans), decoded.rejected, "; ".join(decoded.reasons))

    def _write_together(self, spans: list[ReadableSpan]) -> SpanExportResult:
        """Write ``spans`` with those of every request waiting at the same time, in one
        transaction (group commit): the thread that finds the writer idle writes for all, the
        others wait for its result, which is theirs."""
        mine = _Waiting(spans)
        with self._turn:
            self._waiting.append(mine)
            while not mine.done:
                if self._writing:
                    self._turn.wait()
                    continue
                self._writing = True
                together, self._waiting = self._waiting, []
                self._turn.release()
                try:
                    result = self.writer.export([s for entry in together for s in entry.spans])
                except Exception:  # the writer logs what failed; the clients retry
                    result = SpanExportResult.FAILURE
                finally:
                    self._turn.acquire()
                    self._writing = False
                for entry in together:
                    entry.result, entry.done = result, True
                self._turn.notify_all()
        return mine.result

    def close(self) -> None:
        """Refuse new requests, then write what is buffered and release the database."""
        self._closed = True
        self.writer.shutdown()

"""The SQL exporter: batches of spans into runspan's tables, whatever the database's state.

It writes each batch through :func:`runspan.storage.upsert.write_rows`, with the rows of the
spans still open (which :class:`~runspan.storage.open_spans.OpenSpans` tracks) as ``running``.
When the database cannot be reached, rows wait in a bounded buffer and are retried in the
background; rows beyond the buffer are dropped, counted and logged. A row the database refuses
is cleaned and retried alone; if it is still refused it is logged and skipped, and the rest of
its batch is written. A forked child opens connections of its own.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterable, Sequence
from types import MappingProxyType

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from sqlalchemy import URL, Engine
from sqlalchemy.exc import DBAPIError

from runspan.logs import RateLimitedLog, logger
from runspan.storage.engine import create_writer_engine, database_url_from, described, safe_url
from runspan.storage.errors import DatabaseUnavailable, SchemaError
from runspan.storage.feedback import FeedbackRow, insert_feedback
from runspan.storage.memo import WriterMemo
from runspan.storage.migrate import upgrade
from runspan.storage.open_spans import OpenSpans
from runspan.storage.retention import Upkeep, retention_days_from
from runspan.storage.rows import RowValues, cleaned, span_row
from runspan.storage.upsert import write_rows
from runspan.timeslice import TimeSlices

# Rows kept while the database is unreachable. A row is a few kB at most with content capped
# by the tracer; 20,000 rows ride out minutes of outage for most apps.
DEFAULT_MAX_BUFFERED_ROWS = 20_000
# How soon a write is retried after the database went away, growing to the maximum.
RETRY_INITIAL_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0

RowKey = tuple[str, str]


def _is_disconnect(error: BaseException) -> bool:
    """Whether the database is unreachable (retry later), rather than refusing these rows."""
    if isinstance(error, DatabaseUnavailable):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        name = type(error.orig).__name__
        # Connection failures, and SQLite's lock held past the busy timeout.
        return name in ("OperationalError", "InterfaceError")
    return False


def _snapshot(span: ReadableSpan) -> RowValues | None:
    """The row of a span: final if it has ended, ``running`` if not (``None`` if its attributes
    are being changed this very moment; its end will be written anyway)."""
    end = span.end_time  # first: see span_row
    found = span.attributes or {}
    try:
        # Through a proxy, the copy is its mapping's own: one C call for a plain dict, and the
        # SDK's attributes copy themselves under their lock.
        attributes = dict(found.copy() if isinstance(found, MappingProxyType) else found)
    except RuntimeError:  # changed size during the copy: the app thread is recording on it
        return None
    return span_row(span, attributes, end)


class SqlSpanExporter(SpanExporter):
    """Writes spans into runspan's ``runs`` and ``traces`` tables.

    Args:
        database_url: where; else ``RUNSPAN_DATABASE_URL``, else ``sqlite:///runspan.db``.
        engine: an engine to use instead of a URL (runspan's own migrations still apply).
        max_buffered_rows: rows kept while the database is unreachable; beyond that the
            oldest are dropped, counted and logged.
        migrate: create or upgrade the schema on first use.
        retention_days: remove the traces older than this many days, with their runs, now
            and then between batches; ``None`` keeps all.

    Raises:
        ConfigurationError: a bad URL, a missing driver, a folder that does not exist.
        SchemaError: the database is not runspan's, or a newer runspan's.
    """

    def __init__(
        self,
        database_url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        max_buffered_rows: int = DEFAULT_MAX_BUFFERED_ROWS,
        migrate: bool = True,
        retention_days: float | None = None,
    ) -> None:
        if not isinstance(max_buffered_rows, int) or max_buffered_rows < 1:
            raise ValueError(f"max_buffered_rows={max_buffered_rows!r}: use a positive integer")
        self.engine = (
            engine if engine is not None else create_writer_engine(database_url_from(database_url))
        )
        self._max_buffered = max_buffered_rows
        self._notices = RateLimitedLog(interval=60.0)  # per database: one line a minute each
        self._lock = threading.RLock()
        self._pending: dict[RowKey, RowValues] = {}
        self._dropped = 0
        self._dropped_in_outage = 0
        self._rejected = 0
        self._ready = not migrate
        self._unreachable = False
        self._retry_delay = RETRY_INITIAL_SECONDS
        self._retry: threading.Timer | None = None
        self._closed = False
        #: Pauses between steps of a batch, so that writing never stalls the app's threads.
        self.slices = TimeSlices()
        #: Retention (``retention_days``), applied now and then between batches.
        # What the database holds that batches need not write again (names, slowest floors).
        self._memo = WriterMemo()
        self.upkeep = Upkeep(
            retention_days if retention_days is None else retention_days_from(retention_days)
        )
        #: The spans open now: :class:`StorageSpanProcessor` notes them, and each batch
        #: writes those no batch has written yet as running.
        self.open_spans = OpenSpans()
        if hasattr(os, "register_at_fork"):
            reference = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork(reference))
        if migrate:
            try:
                self._prepare()
            except DatabaseUnavailable as error:
                logger.warning(
                    "runspan: %s; runs are kept (up to %d) and written when it is back",
                    error,
                    self._max_buffered,
                )

    @property
    def dropped_rows(self) -> int:
        """Rows lost because the buffer was full while the database was unreachable."""
        return self._dropped

    @property
    def rejected_rows(self) -> int:
        """Rows the database refused even after cleaning, logged and skipped."""
        return self._rejected

    @property
    def buffered_rows(self) -> int:
        """Rows waiting for the database to come back."""
        return len(self._pending)

    def _prepare(self) -> None:
        if not self._ready:
            upgrade(self.engine)
            self._ready = True

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        batch: dict[RowKey, RowValues] = {}
        with self._lock, self.slices.working():
            # A span queued at its start and again at its end is the same object twice: make
            # its row once.
            self._add_rows(batch, {id(span): span for span in spans}.values())
            if self._closed:
                return SpanExportResult.FAILURE
            self._add_open_rows(batch)
            self._merge(batch)
            return SpanExportResult.SUCCESS if self._write_pending() else SpanExportResult.FAILURE

    def _add_rows(self, batch: dict[RowKey, RowValues], spans: Iterable[ReadableSpan]) -> None:
        pause_if_due = self.slices.pause_if_due
        for span in spans:
            pause_if_due()
            try:
                row = _snapshot(span)
            except Exception:
                self._notices.exception("row", "runspan: a span could not be made a row; skipped")
                continue
            if row is not None:
                key = (row["trace_id"], row["span_id"])
                if row["status"] != "running" or batch.get(key, row)["status"] == "running":
                    batch[key] = row

    def _add_open_rows(self, batch: dict[RowKey, RowValues]) -> None:
        """Add the rows of the spans open now that no batch has written yet: running, or
        final if a span ended since it was looked up. Called under the lock."""
        self._add_rows(batch, self.open_spans.unwritten())

    def _merge(self, batch: dict[RowKey, RowValues]) -> None:
        pending = self._pending
        for key, row in batch.items():
            held = pending.get(key)
            if held is None or row["status"] != "running" or held["status"] == "running":
                pending[key] = row
        excess = len(pending) - self._max_buffered
        if excess > 0:
            for key in list(pending)[:excess]:  # oldest first: dicts keep insertion order
                del pending[key]
            self._dropped += excess
            self._dropped_in_outage += excess
            self._notices.log(
                "dropped",
                f"runspan: the database {safe_url(self.engine.url)} is unreachable and the"
                f" buffer of {self._max_buffered} rows is full: dropped {excess} rows"
                f" ({self._dropped} in all)",
            )

    def _write_pending(self) -> bool:
        """Write what is pending; ``True`` when nothing is left. Called under the lock."""
        if not self._pending:
            return True
        rows = list(self._pending.values())
        self._memo.forget_staged()
        try:
            self._prepare()
            self.upkeep.visit_if_due(self.engine)
            with self.engine.begin() as connection:
                write_rows(
                    connection,
                    rows,
                    self.slices.pause_if_due,
                    catching_up=self.slices.behind(),
                    memo=self._memo,
                )
            self._memo.committed()
        except SchemaError as error:
            self._pending.clear()
            self._dropped += len(rows)
            self._notices.log("schema", f"runspan: cannot write runs: {error}", level=logging.ERROR)
            return False
        except Exception as error:
            if _is_disconnect(error):
                self._went_away(error)
                return False
            try:
                self._write_one_by_one(rows)
            except Exception as again:
                if _is_disconnect(again):
                    self._went_away(again)
                    return False
                self._pending.clear()
                self._rejected += len(rows)
                self._notices.exception("batch", f"runspan: {len(rows)} rows could not be written")
                return False
        self._pending.clear()
        if self._unreachable:
            self._unreachable = False
            self._retry_delay = RETRY_INITIAL_SECONDS
            lost, self._dropped_in_outage = self._dropped_in_outage, 0
            logger.log(
                logging.WARNING if lost else logging.INFO,
                "runspan: the database is back; wrote %d buffered rows, %d rows were dropped"
                " while it was unreachable",
                len(rows),
                lost,
            )
        return True

    def _write_one_by_one(self, rows: Sequence[RowValues]) -> None:
        """Write each row in its own savepoint: a row the database refuses costs only itself."""
        with self.engine.begin() as connection:
            for row in rows:
                for attempt in (row, cleaned(row)):
                    try:
                        with connection.begin_nested():
                            write_rows(connection, [attempt])
                        break
                    except Exception as error:  # this row only: its type, value or text
                        if _is_disconnect(error):
                            raise
                        failure = error
                else:
                    self._rejected += 1
                    self._notices.log(
                        "rejected",
                        f"runspan: the database refused run {row.get('run_id') or row['span_id']}"
                        f" ({row['name']!r}); skipped it: {described(failure, self.engine.url)}",
                    )

    def _went_away(self, error: BaseException) -> None:
        if not self._unreachable:
            self._unreachable = True
            logger.warning(
                "runspan: cannot write to %s (%s); keeping up to %d rows and retrying",
                safe_url(self.engine.url),
                described(error, self.engine.url),
                self._max_buffered,
            )
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._closed or (self._retry is not None and self._retry.is_alive()):
            return
        self._retry = threading.Timer(self._retry_delay, self._retry_now)
        self._retry.daemon = True
        self._retry.start()
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_SECONDS)

    def _retry_now(self) -> None:
        with self._lock, self.slices.working():
            self._retry = None
            if not self._closed:
                self._write_pending()

    def write_feedback(self, rows: list[FeedbackRow]) -> bool:
        """Insert feedback rows under the writer's lock; ``False`` when the database is
        unreachable (the caller keeps them for later). Rows it refuses are logged and dropped."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._prepare()
                with self.engine.begin() as connection:
                    insert_feedback(connection, rows)
            except Exception as error:
                if _is_disconnect(error):
                    return False
                self._notices.exception("feedback", "runspan: feedback could not be stored")
            return True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write what is buffered now, and the open spans as running; ``False`` if the database
        is still unreachable."""
        with self._lock, self.slices.working():
            self._flush_open()
            return self._write_pending()

    def _flush_open(self) -> None:
        if not self._closed:
            batch: dict[RowKey, RowValues] = {}
            self._add_open_rows(batch)
            self._merge(batch)

    def shutdown(self) -> None:
        with self._lock, self.slices.working():
            if self._closed:
                return
            self._flush_open()  # runs still open as the process ends are kept as running
            self._write_pending()
            self._closed = True
            if self._retry is not None:
                self._retry.cancel()
            if self._pending:
                logger.warning(
                    "runspan: %d rows could not be written before shutdown", len(self._pending)
                )
        self.engine.dispose()


def _after_fork(reference: weakref.ref[SqlSpanExporter]) -> None:
    """In a forked child: connections and locks are the parent's and must not be used."""
    exporter = reference()
    if exporter is None:
        return
    # The parent's pooled connections (a PostgreSQL socket, a SQLite handle) stay the parent's:
    # forget them without closing them, and open new ones on demand.
    exporter.engine.dispose(close=False)
    exporter._lock = threading.RLock()
    exporter._retry = None
    exporter._pending = {}  # the parent writes what it had buffered
    exporter.open_spans.clear()  # and its open spans: the child's are its own

"""The span writer: an OpenTelemetry span processor with a SQL exporter behind it.

Batching is the SDK's: :class:`StorageSpanProcessor` is a ``BatchSpanProcessor`` (bounded queue,
background thread, safe across fork) that queues each span when it ends and keeps a map of the
spans still open, so that every batch also writes the runs open at that moment as ``running``.
:class:`SqlSpanExporter` writes a batch in one transaction: an idempotent upsert of the ``runs``
rows (the same span twice is one row, and a finished row is never turned back into a running
one), then the totals of every trace the batch touched, recomputed from ``runs`` so they are
exact in whatever order spans come.

When the database cannot be reached, rows wait in a bounded buffer and are retried in the
background; rows beyond the buffer are dropped, counted and logged. A row the database refuses
is cleaned and retried alone; if it is still refused it is logged and skipped, and the rest of
its batch is written.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from sqlalchemy import URL, Column, Connection, Engine, bindparam, literal_column, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from runspan.batching import QuietBatchSpanProcessor
from runspan.logs import RateLimitedLog, logger
from runspan.storage.engine import create_writer_engine, database_url_from, safe_url, scrubbed
from runspan.storage.errors import DatabaseUnavailable, SchemaError
from runspan.storage.migrate import upgrade
from runspan.storage.retries import mark_retried
from runspan.storage.rows import COLUMNS, RowValues, cleaned, encode_json, span_row
from runspan.storage.schema import runs, traces

# Rows kept while the database is unreachable. A row is a few kB at most with content capped
# by the tracer; 20,000 rows ride out minutes of outage for most apps.
DEFAULT_MAX_BUFFERED_ROWS = 20_000
# How soon a write is retried after the database went away, growing to the maximum.
RETRY_INITIAL_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
# The SDK's batching, tuned for a database: written every second (the most a crash can lose),
# in batches of up to 1,024 spans (a transaction has a fixed cost: commit, trace totals), with
# room for bursts.
DEFAULT_SCHEDULE_DELAY_MILLIS = 1000
DEFAULT_MAX_QUEUE_SIZE = 16_384
DEFAULT_MAX_EXPORT_BATCH_SIZE = 1024
# Open spans tracked for their running rows. Beyond it a new span gets no running row (its row
# still comes when it ends): spans that other code starts and never ends cannot grow it.
DEFAULT_MAX_OPEN_SPANS = 16_384
# Trace ids per statement when totals are recomputed, under every database's parameter limit.
_TRACE_CHUNK = 500

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


def _sqlite_upsert() -> Any:
    """SQLite's ``INSERT ... ON CONFLICT DO UPDATE`` of runs rows (PostgreSQL's, by the same
    rule, is ``_RUNS_ON_CONFLICT``).

    The update applies only over a ``running`` row: a finished row written again is left as it
    is, so a late copy of a span's start can never undo its end.
    """
    statement = sqlite.insert(runs)
    updates = {
        name: statement.excluded[name] for name in COLUMNS if name not in ("trace_id", "span_id")
    }
    return statement.on_conflict_do_update(
        index_elements=[runs.c.trace_id, runs.c.span_id],
        set_=updates,
        where=runs.c.status == literal_column("'running'"),  # no parameter
    )


@functools.lru_cache(maxsize=1)
def _sqlite_upsert_sql() -> str:
    """The SQLite upsert as SQL text with positional parameters in ``COLUMNS`` order.

    Rows go to sqlite3's ``executemany`` as tuples: SQLAlchemy's per-row parameter processing,
    or even binding by name, would cost more than SQLite's own work on a batch (every value is
    already what the database takes).
    """
    dialect = pysqlite.dialect(paramstyle="qmark")
    compiled = _sqlite_upsert().compile(dialect=dialect, column_keys=list(COLUMNS))
    assert tuple(compiled.positiontup or ()) == COLUMNS, "parameters out of column order"
    return str(compiled)


_row_values = operator.itemgetter(*COLUMNS)

# Rows go to SQLite many to a statement, not through executemany: sqlite3 lets go of the GIL
# around every row's step, and a thread that gives up the GIL while the application's thread
# is busy waits up to a switch interval (5 ms) to get it back. Row by row, a batch of 1,024
# took seconds under a busy app and the queue overflowed; a statement at a time, it takes as
# long as the work. SQLite takes 32,766 parameters in a statement since 3.32, 999 before.
_SQLITE_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999


@functools.lru_cache(maxsize=32)
def _many_rows(sql: str, columns: int, rows: int) -> str:
    """``sql``, an INSERT of one row of ``columns`` ``?`` parameters, for ``rows`` rows."""
    one = "(" + ", ".join(["?"] * columns) + ")"
    assert one in sql, "expected a VALUES clause of positional parameters"
    return sql.replace(one, ", ".join([one] * rows), 1)


def _chunk_sizes(count: int, most: int) -> list[int]:
    """``count`` rows as statements of a power-of-two number of rows each, at most ``most``.

    Batches come in every size; statements of as many sizes would each be prepared anew by
    SQLite (a millisecond or more for a thousand rows) and kept in sqlite3's statement cache.
    Powers of two are a dozen statements in all, prepared once.
    """
    largest = 1 << (max(1, most).bit_length() - 1)
    sizes = []
    while count:
        size = min(largest, 1 << (count.bit_length() - 1))
        sizes.append(size)
        count -= size
    return sizes


def _insert_many(connection: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Runs the one-row INSERT ``sql`` for all ``rows``, in a few statements of many rows."""
    if not rows:
        return
    columns = len(rows[0])
    start = 0
    for size in _chunk_sizes(len(rows), _SQLITE_MAX_PARAMETERS // columns):
        flat = [value for row in rows[start : start + size] for value in row]
        connection.exec_driver_sql(_many_rows(sql, columns, size), tuple(flat))
        start += size


# The traces rows of the batch's trace ids, computed from what ``runs`` holds now and written in
# the same statement, so that the totals never pass through Python. The root is the trace's
# earliest span (one without a parent first, when two start in the same nanosecond); the
# trace's name, status and end are its root's. Durations divide by a float as Python does.
_TRACE_COLUMNS = (  # in the order of _TRACE_VALUES, after trace_id
    "trace_id",
    "root_run_id",
    "root_span_id",
    "service_name",
    "name",
    "start_ns",
    "end_ns",
    "duration_ms",
    "status",
    "run_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "total_tokens",
)
assert set(_TRACE_COLUMNS) == {c.name for c in traces.columns}, "traces columns changed"
_TRACE_VALUES = """
    root.run_id, root.span_id, root.service_name, root.name, agg.start_ns,
    CASE WHEN root.status = 'running' THEN NULL ELSE root.end_ns END,
    CASE WHEN root.status = 'running' THEN NULL
        ELSE (root.end_ns - agg.start_ns) / CAST(1000000 AS DOUBLE PRECISION) END,
    root.status, agg.run_count, agg.error_count, agg.input_tokens, agg.output_tokens,
    agg.total_tokens"""
_TRACE_AGGREGATES = """min(start_ns) AS start_ns, count(*) AS run_count,
        sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS error_count,
        sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
        sum(total_tokens) AS total_tokens"""
_TRACES_ON_CONFLICT = "ON CONFLICT (trace_id) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in _TRACE_COLUMNS if name != "trace_id"
)
_SQLITE_TRACE_TOTALS = text(
    f"""
INSERT INTO traces ({", ".join(_TRACE_COLUMNS)})
SELECT agg.trace_id, {_TRACE_VALUES}
FROM (
    SELECT trace_id, {_TRACE_AGGREGATES}
    FROM runs WHERE trace_id IN :ids GROUP BY trace_id
) AS agg
JOIN runs AS root ON root.id = (
    SELECT id FROM runs WHERE trace_id = agg.trace_id
    ORDER BY start_ns, parent_span_id IS NOT NULL LIMIT 1
)
WHERE true
{_TRACES_ON_CONFLICT}
"""  # "WHERE true": SQLite would read ON CONFLICT as the join's ON without it
).bindparams(bindparam("ids", expanding=True))
# PostgreSQL: per trace id, through the trace_id index. An IN list lets its planner choose
# whole-table scans while a new table has no statistics yet.
_PG_TRACE_TOTALS = text(
    f"""
INSERT INTO traces ({", ".join(_TRACE_COLUMNS)})
SELECT t.trace_id, {_TRACE_VALUES}
FROM unnest(CAST(:ids AS VARCHAR[])) AS t(trace_id)
CROSS JOIN LATERAL (
    SELECT {_TRACE_AGGREGATES}
    FROM runs r WHERE r.trace_id = t.trace_id
) AS agg
CROSS JOIN LATERAL (
    SELECT run_id, span_id, name, status, service_name, end_ns
    FROM runs r WHERE r.trace_id = t.trace_id
    ORDER BY start_ns, parent_span_id IS NOT NULL
    LIMIT 1
) AS root
{_TRACES_ON_CONFLICT}
"""
)


def _refresh_traces(connection: Connection, trace_ids: list[str]) -> None:
    """Recompute and write the ``traces`` rows of ``trace_ids``."""
    if connection.dialect.name == "postgresql":
        connection.execute(_PG_TRACE_TOTALS, {"ids": trace_ids})
    else:
        connection.execute(_SQLITE_TRACE_TOTALS, {"ids": trace_ids})


# PostgreSQL: a batch goes in as one INSERT ... SELECT FROM json_to_recordset(the rows). An
# INSERT per row costs a round of the server's per-statement work for each span, which capped
# the writer at a few thousand spans a second.
_PG_DIALECT: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]


def _pg_record_type(column: Column[Any]) -> tuple[str, str]:
    """How a column's value is read from the batch's JSON, and the cast to the column's type."""
    name = column.type.compile(dialect=_PG_DIALECT)
    if name == "JSONB":
        return "text", "::jsonb"  # the writer hands over JSON text
    if name in ("BIGINT", "INTEGER"):
        return "bigint", ""
    if name == "FLOAT":
        return "float8", ""
    return "text", ""


@functools.lru_cache(maxsize=1)
def _pg_runs_upsert() -> str:
    """An INSERT of a whole batch sent as one JSON document: one statement, one round trip,
    and the encoding done by the C JSON encoder (psycopg adapts Python lists to arrays element
    by element in Python, which cost more than the database's work). Updates, as on SQLite,
    apply only over a ``running`` row."""
    types = [_pg_record_type(runs.c[name]) for name in COLUMNS]
    record = ", ".join(f"{name} {kind}" for name, (kind, _) in zip(COLUMNS, types, strict=True))
    picked = ", ".join(f"{name}{cast}" for name, (_, cast) in zip(COLUMNS, types, strict=True))
    updates = ", ".join(
        f"{name} = excluded.{name}" for name in COLUMNS if name not in ("trace_id", "span_id")
    )
    return (
        f"INSERT INTO runs ({', '.join(COLUMNS)}) SELECT {picked}"
        f" FROM json_to_recordset(%s::json) AS incoming ({record})"
        f" ON CONFLICT (trace_id, span_id) DO UPDATE SET {updates}"
        " WHERE runs.status = 'running'"
    )


def _pg_insert_runs(connection: Connection, rows: Sequence[RowValues]) -> None:
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_pg_runs_upsert(), (encode_json(rows),))
    finally:
        cursor.close()


def write_rows(connection: Connection, rows: Sequence[RowValues]) -> None:
    """Upsert ``rows`` into ``runs`` and refresh their traces, in the caller's transaction."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        _pg_insert_runs(connection, rows)
    else:
        _insert_many(connection, _sqlite_upsert_sql(), [_row_values(row) for row in rows])
    mark_retried(connection, rows)
    touched = sorted({row["trace_id"] for row in rows})
    for start in range(0, len(touched), _TRACE_CHUNK):
        _refresh_traces(connection, touched[start : start + _TRACE_CHUNK])


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
        #: The spans open now, by span id: :class:`StorageSpanProcessor` keeps it, and each
        #: batch writes those no batch has written yet as running. (Not by ``id()``: the SDK's
        #: spans hand their processors a new object when they end.)
        self.open_spans: dict[int, ReadableSpan] = {}
        self._open_written: set[int] = set()  # span ids of open spans already written
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
        # A span queued at its start and again at its end is the same object twice: make its
        # row once.
        self._add_rows(batch, {id(span): span for span in spans}.values())
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            self._add_open_rows(batch)
            self._merge(batch)
            return SpanExportResult.SUCCESS if self._write_pending() else SpanExportResult.FAILURE

    def _add_rows(self, batch: dict[RowKey, RowValues], spans: Iterable[ReadableSpan]) -> None:
        for span in spans:
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
        open_now = list(self.open_spans.values())  # one C call: safe while the app adds
        if not open_now and not self._open_written:
            return
        written = self._open_written
        fresh = [
            span
            for span in open_now
            if (context := span.context) is not None
            and context.trace_flags.sampled
            and context.span_id not in written
        ]
        self._add_rows(batch, fresh)
        # What is no longer open is forgotten: this set never outgrows the open spans.
        self._open_written = {span.context.span_id for span in open_now if span.context is not None}

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
        try:
            self._prepare()
            with self.engine.begin() as connection:
                write_rows(connection, rows)
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
                        f" ({row['name']!r}); skipped it: "
                        f"{scrubbed(str(failure), self.engine.url).splitlines()[0]}",
                    )

    def _went_away(self, error: BaseException) -> None:
        if not self._unreachable:
            self._unreachable = True
            detail = scrubbed(str(getattr(error, "orig", error)), self.engine.url)
            logger.warning(
                "runspan: cannot write to %s (%s); keeping up to %d rows and retrying",
                safe_url(self.engine.url),
                detail.strip().splitlines()[0] if detail.strip() else type(error).__name__,
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
        with self._lock:
            self._retry = None
            if not self._closed:
                self._write_pending()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write what is buffered now, and the open spans as running; ``False`` if the database
        is still unreachable."""
        with self._lock:
            self._flush_open()
            return self._write_pending()

    def _flush_open(self) -> None:
        if not self._closed:
            batch: dict[RowKey, RowValues] = {}
            self._add_open_rows(batch)
            self._merge(batch)

    def shutdown(self) -> None:
        with self._lock:
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
    exporter._open_written = set()


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
    """

    def __init__(
        self,
        database_url: str | URL | None = None,
        *,
        exporter: SqlSpanExporter | None = None,
        record_running: bool = True,
        schedule_delay_millis: float = DEFAULT_SCHEDULE_DELAY_MILLIS,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
        max_open_spans: int = DEFAULT_MAX_OPEN_SPANS,
    ) -> None:
        if not isinstance(max_open_spans, int) or max_open_spans < 0:
            raise ValueError(f"max_open_spans={max_open_spans!r}: use a non-negative integer")
        self.exporter = exporter if exporter is not None else SqlSpanExporter(database_url)
        self._record_running = record_running
        self._open = self.exporter.open_spans
        self._max_open = max_open_spans
        super().__init__(
            self.exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
            sink=f"runspan's writer to {safe_url(self.exporter.engine.url)}",
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # Only noted here: each batch reads what is open when it is written. Queueing every
        # span at its start as well doubled the queue's traffic and the writer's work.
        if not self._record_running:
            return
        open_spans = self._open
        if len(open_spans) < self._max_open:
            open_spans[span.context.span_id] = span
        if not self.queue_length():
            # Nothing is queued (or this SDK's queue cannot be seen), so no batch may come for
            # a while: the SDK's worker writes only when something is queued. Queueing this
            # span means the runs open now are written within a flush interval, even in a
            # quiet app.
            super().on_end(span)

    def on_end(self, span: ReadableSpan) -> None:
        self._open.pop(span.context.span_id, None)
        super().on_end(span)

    def force_flush(self, timeout_millis: int | None = 30_000) -> bool:
        """Returns when every span ended so far is in the database, and those still open are
        in it as running (``False`` if it is not reachable: those rows stay buffered and are
        retried)."""
        queued = super().force_flush(timeout_millis)
        return self.exporter.force_flush() and queued

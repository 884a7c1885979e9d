"""Writing rows: the dialect-specific SQL that puts a batch into ``runs`` and ``traces``.

One transaction per batch, written in steps of ``ROWS_PER_STATEMENT`` rows with ``pause`` (the
writer's time slices) between them: a statement or driver step per row gives up the GIL per row
and under a busy app waits up to a switch interval to get it back, while a whole batch at once
holds the GIL for milliseconds. The steps: an idempotent upsert of the ``runs`` rows (the same
span twice is one row, and a finished row is never turned back into a running one), the failed
attempts a later attempt retried, the batch's span names (``span_names``) and slowest runs
(``slowest_runs``), the days of late runs marked stale for the daily rollups
(``rolled_days``), then the totals of every trace the batch touched, recomputed from ``runs`` so
they are exact in whatever order spans come.
"""

from __future__ import annotations

import functools
import operator
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Column, Connection, bindparam, literal_column, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import Dialect

from runspan.storage.memo import WriterMemo
from runspan.storage.partitions import make_days
from runspan.storage.prices import copy_prices_of
from runspan.storage.retries import mark_retried
from runspan.storage.rollups import mark_late
from runspan.storage.rows import COLUMNS, RowValues, encode_json
from runspan.storage.schema import DAY_NS, runs, traces
from runspan.storage.slowest import note_slowest
from runspan.storage.trace_costs import count_groups, group_keys, hold_prices

# Trace ids per statement when totals are recomputed, under every database's parameter limit.
_TRACE_CHUNK = 500


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
# took seconds under a busy app and the queue overflowed. Yet a statement of 512 rows binds
# 20,000 values holding the GIL (milliseconds of the app's latency): 32 rows bind in a fraction
# of a millisecond, and the writer pauses between statements (runspan.timeslice). SQLite takes
# 32,766 parameters in a statement since 3.32, 999 before.
_SQLITE_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
ROWS_PER_STATEMENT = 32
# Behind (a backlog; the writer does not pause), the fewest statements: each gives up the GIL,
# and among many busy threads the writer then waits its turn to get it back.
CATCH_UP_ROWS_PER_STATEMENT = 1024


def _no_pause() -> None:
    pass


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


def _insert_many(
    connection: Connection,
    sql: str,
    rows: Sequence[tuple[Any, ...]],
    pause: Callable[[], None] = _no_pause,
    rows_per_statement: int = ROWS_PER_STATEMENT,
) -> None:
    """Runs the one-row INSERT ``sql`` for all ``rows``, in statements of up to
    ``rows_per_statement`` rows, calling ``pause`` between them."""
    if not rows:
        return
    columns = len(rows[0])
    start = 0
    most = min(rows_per_statement, _SQLITE_MAX_PARAMETERS // columns)
    for size in _chunk_sizes(len(rows), most):
        if start:
            pause()
        flat = [value for row in rows[start : start + size] for value in row]
        connection.exec_driver_sql(_many_rows(sql, columns, size), tuple(flat))
        start += size


# The traces rows of the batch's trace ids, computed from what ``runs`` holds now and written in
# the same statement, so that the totals never pass through Python. The root is the trace's
# earliest span (one without a parent first, when two start in the same nanosecond); the
# trace's name, status and end are its root's. Durations divide by a float as Python does. Its
# cost is runs_v's, where the price of a run is defined once; only a run that reported tokens
# has a cost, and only those look their price up.
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
    "session_id",
    "user_id",
    "cost_usd",
)
assert set(_TRACE_COLUMNS) == {c.name for c in traces.columns}, "traces columns changed"
_TRACE_VALUES = """
    root.run_id, root.span_id, root.service_name, root.name, agg.start_ns,
    CASE WHEN root.status = 'running' THEN NULL ELSE root.end_ns END,
    CASE WHEN root.status = 'running' THEN NULL
        ELSE (root.end_ns - agg.start_ns) / CAST(1000000 AS DOUBLE PRECISION) END,
    root.status, agg.run_count, agg.error_count, agg.input_tokens, agg.output_tokens,
    agg.total_tokens, agg.session_id, agg.user_id,
    (SELECT sum(v.cost_usd) FROM runs_v v WHERE v.trace_id = {0}.trace_id{1}
        AND (v.input_tokens IS NOT NULL OR v.output_tokens IS NOT NULL))"""
_TRACE_AGGREGATES = """min(start_ns) AS start_ns, count(*) AS run_count,
        sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS error_count,
        sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
        sum(total_tokens) AS total_tokens, max(session_id) AS session_id,
        max(user_id) AS user_id"""
_TRACES_ON_CONFLICT = "ON CONFLICT (trace_id) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in _TRACE_COLUMNS if name != "trace_id"
)
_SQLITE_TRACE_TOTALS = text(
    f"""
INSERT INTO traces ({", ".join(_TRACE_COLUMNS)})
SELECT agg.trace_id, {_TRACE_VALUES.format("agg", "")}
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
# whole-table scans while a new table has no statistics yet. The root is ordered by
# ``start_ns + 0``, which no index holds: when the planner believed a trace had hundreds of runs
# (no statistics yet, or old ones), it walked the index of start times instead, reading the
# whole table for a trace (10 s for one batch, 96 s at 400,000 runs). runs is partitioned by
# day (revision 0018): the traces' runs start no earlier than ``from_ns`` (the first of their
# stored starts and of the rows just written), a constant by which the planner leaves every
# older partition out. Without it, each statement is planned over every partition of the
# history, and looks into each.
_PG_TRACE_TOTALS = text(
    f"""
INSERT INTO traces ({", ".join(_TRACE_COLUMNS)})
SELECT t.trace_id, {_TRACE_VALUES.format("t", " AND v.start_ns >= :from_ns")}
FROM unnest(CAST(:ids AS VARCHAR[])) AS t(trace_id)
CROSS JOIN LATERAL (
    SELECT {_TRACE_AGGREGATES}
    FROM runs r WHERE r.trace_id = t.trace_id AND r.start_ns >= :from_ns
) AS agg
CROSS JOIN LATERAL (
    SELECT run_id, span_id, name, status, service_name, end_ns
    FROM runs r WHERE r.trace_id = t.trace_id AND r.start_ns >= :from_ns
    ORDER BY start_ns + 0, parent_span_id IS NOT NULL
    LIMIT 1
) AS root
{_TRACES_ON_CONFLICT}
"""
)
# Each trace's start through its key: a min() in SQL the planner reads as the first entry of
# the index of start times that is one of them, walking the history from its oldest trace.
_PG_STORED_STARTS = text(
    "SELECT start_ns FROM traces WHERE trace_id = ANY(CAST(:ids AS VARCHAR[]))"
)


def _refresh_traces(connection: Connection, firsts: dict[str, int]) -> None:
    """Recompute and write the ``traces`` rows of the traces in ``firsts`` (each trace's first
    start among the rows just written)."""
    ids = list(firsts)
    if connection.dialect.name == "postgresql":
        stored = connection.execute(_PG_STORED_STARTS, {"ids": ids}).scalars()
        from_ns = min([*stored, *firsts.values()])
        connection.execute(_PG_TRACE_TOTALS, {"ids": ids, "from_ns": from_ns})
    else:
        connection.execute(_SQLITE_TRACE_TOTALS, {"ids": ids})


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
    key = ("trace_id", "span_id", "start_ns")  # runs is partitioned by start (revision 0013)
    updates = ", ".join(f"{name} = excluded.{name}" for name in COLUMNS if name not in key)
    return (
        f"INSERT INTO runs ({', '.join(COLUMNS)}) SELECT {picked}"
        f" FROM json_to_recordset(%s::json) AS incoming ({record})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        " WHERE runs.status = 'running'"
    )


def _pg_insert_runs(
    connection: Connection, rows: Sequence[RowValues], pause: Callable[[], None]
) -> None:
    # One statement (one round trip), its JSON encoded ROWS_PER_STATEMENT rows at a time with
    # pauses between: the C encoder holds the GIL for as long as it runs.
    parts = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        if start:
            pause()
        parts.append(encode_json(rows[start : start + ROWS_PER_STATEMENT])[1:-1])
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_pg_runs_upsert(), ("[" + ",".join(parts) + "]",))
    finally:
        cursor.close()


# The model names each database's writer has met in this process: the first time, the imported
# prices of the name are copied into model_prices (runspan.storage.prices). Bounded: past it,
# names are still priced by `runspan prices update`.
_MODELS_MET: dict[str, set[str]] = {}
_MAX_MODELS_MET = 10_000


def _price_new_models(connection: Connection, rows: Sequence[RowValues]) -> None:
    met = _MODELS_MET.setdefault(str(connection.engine.url), set())
    new = {row["model_name"] for row in rows if row["model_name"]} - met
    if new and len(met) < _MAX_MODELS_MET:
        copy_prices_of(connection, new)
        met.update(new)


# Each name is written with its runs, in their transaction: a batch that fails and is written
# again later writes its names again too. A batch has a few distinct names, and the statement
# that finds them all there already changes nothing.
_SPAN_NAMES = text(
    "INSERT INTO span_names (service_name, name, span_kind) VALUES (:service, :name, :kind)"
    " ON CONFLICT DO NOTHING"
)


def _record_span_names(
    connection: Connection, rows: Sequence[RowValues], memo: WriterMemo | None
) -> None:
    names = {
        (row["service_name"], row["name"], row["span_kind"])
        for row in rows
        if row["service_name"] is not None
    }
    if memo is not None:
        names -= memo.names
        memo.stage_names(names)
    if names:
        # In one order in every process: two PostgreSQL writers inserting the same names in
        # different orders would each wait for the other's.
        connection.execute(
            _SPAN_NAMES,
            [
                {"service": service, "name": name, "kind": kind}
                for service, name, kind in sorted(names)
            ],
        )


def write_rows(
    connection: Connection,
    rows: Sequence[RowValues],
    pause: Callable[[], None] = _no_pause,
    *,
    catching_up: bool = False,
    memo: WriterMemo | None = None,
) -> None:
    """Upsert ``rows`` into ``runs`` and refresh their traces, in the caller's transaction,
    calling ``pause`` between statements (where the writer may let the app run); in the fewest
    statements when ``catching_up``; skipping what ``memo`` says would change nothing (the
    caller tells it when the transaction commits)."""
    if not rows:
        return
    # First: before any price it copies moves price_state on (runspan.storage.trace_costs).
    hold_prices(connection)
    if connection.dialect.name == "postgresql":
        make_days(connection, {row["start_ns"] // DAY_NS for row in rows})
        _pg_insert_runs(connection, rows, pause)
    else:
        values = [_row_values(row) for row in rows]
        most = CATCH_UP_ROWS_PER_STATEMENT if catching_up else ROWS_PER_STATEMENT
        _insert_many(connection, _sqlite_upsert_sql(), values, pause, most)
    pause()
    mark_retried(connection, rows)
    _price_new_models(connection, rows)
    _record_span_names(connection, rows, memo)
    note_slowest(connection, rows, memo)
    mark_late(connection, rows, time.time_ns())
    firsts: dict[str, int] = {}
    for row in rows:
        trace, start = row["trace_id"], row["start_ns"]
        if start < firsts.get(trace, start + 1):
            firsts[trace] = start
    touched = sorted(firsts)
    # A trace may leave a conversation or day as it changes: both are counted again.
    keys = group_keys(connection, touched)
    for start in range(0, len(touched), _TRACE_CHUNK):
        pause()
        _refresh_traces(
            connection, {trace: firsts[trace] for trace in touched[start : start + _TRACE_CHUNK]}
        )
    count_groups(connection, keys | group_keys(connection, touched))

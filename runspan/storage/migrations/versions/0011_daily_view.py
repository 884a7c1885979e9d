"""runs_daily_v: every UTC day's runs counted per group, whole days from the rollups and the rest
from runs, so that the documented questions per day, model, tool or error read a few rows a day;
the rollups learn the error type (a group), the latest start, an error message, the most
attempts and the times to first token they need; partial indexes for LangGraph's paused threads
and the invocations that resume them

The rollups made before this revision lack the new columns: every rolled period is marked stale,
and the writer rolls them up again (until then, the view counts those days from runs).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_DAY_NS = 86_400 * 10**9
_HOUR_NS = 3_600 * 10**9
_TABLES = ("runs_daily", "runs_hourly")
_COLUMNS = (
    ("error_type", sa.Text()),
    ("last_start_ns", sa.BigInteger()),
    ("error_example", sa.Text()),
    ("attempt_max", sa.Integer()),
    ("ttft_count", sa.BigInteger()),
    ("ttft_ms_sum", sa.Float()),
    ("ttft_ms_max", sa.Float()),
)
_PARTIAL_INDEXES = (
    ("runs", "ix_runs_resumes", "resumes_trace_id", "resumes_trace_id IS NOT NULL"),
    ("runs", "ix_runs_resuming", "start_ns", "resumes_trace_id IS NOT NULL"),
    ("traces", "ix_traces_interrupted", "start_ns", "status = 'interrupted'"),
)
_GROUPS = (
    "service_name, name, run_type, status, unfinished_reason, error_type, model_name,"
    " langgraph_node, trace_name"
)
# Runs with the name of their trace (its root's), as the rollups group them.
_NAMED = "SELECT r.*, t.name AS trace_name FROM {} r LEFT JOIN traces t ON t.trace_id = r.trace_id"
_IS_ROOT = {
    "sqlite": "CASE WHEN run_id IS NOT NULL AND parent_run_id IS NULL THEN 1 ELSE 0 END",
    "postgresql": "(run_id IS NOT NULL AND parent_run_id IS NULL)",
}
# The first day runs_daily does not hold yet, and the first hour after it runs_hourly does not.
_DAY_FROM = "(SELECT coalesce(max(start_day) + 1, 0) FROM rolled_days WHERE runs IS NOT NULL)"
_HOUR_FROM = (
    f"(SELECT coalesce(max(start_hour) + 1, {_DAY_FROM} * 24) FROM rolled_hours"
    f" WHERE runs IS NOT NULL AND start_hour >= {_DAY_FROM} * 24)"
)
# A range closed on both sides: SQLite's planner, which has no statistics, then reads the index of
# start times, not a partial index matching a filter pushed down from a query (model_name IS NOT
# NULL would read every model run).
_LAST_NS = 2**63 - 1
# Days in which a price took effect: no one price serves the whole day, so their runs are priced
# one by one.
_PRICED_MIDDAY = (
    f"SELECT valid_from_ns / {_DAY_NS} FROM model_prices WHERE valid_from_ns % {_DAY_NS} <> 0"
)
# What the rollups hold but cannot answer as they stand, counted from runs: stale days, stale
# hours after them, and the days in which a price took effect.
_COUNTED = f"""SELECT start_day * {_DAY_NS} AS first_ns, (start_day + 1) * {_DAY_NS} AS end_ns
    FROM rolled_days WHERE stale IS NOT NULL AND start_day < {_DAY_FROM}
        AND start_day NOT IN ({_PRICED_MIDDAY})
    UNION ALL
    SELECT start_hour * {_HOUR_NS}, (start_hour + 1) * {_HOUR_NS}
    FROM rolled_hours WHERE stale IS NOT NULL AND start_hour >= {_DAY_FROM} * 24
        AND start_hour < {_HOUR_FROM} AND start_hour / 24 NOT IN ({_PRICED_MIDDAY})
    UNION ALL
    SELECT DISTINCT midday / {_DAY_NS} * {_DAY_NS}, (midday / {_DAY_NS} + 1) * {_DAY_NS}
    FROM (SELECT valid_from_ns AS midday FROM model_prices
          WHERE valid_from_ns % {_DAY_NS} <> 0) AS prices"""
# As runs_v prices a run: one that reported tokens, at the price valid when it started. A group of
# runs is priced as one, at the start of its period: no price took effect during its day.
_COSTED = "(input_tokens IS NOT NULL OR output_tokens IS NOT NULL)"
_COST_SUMS = f"""count(CASE WHEN {_COSTED} THEN 1 END),
    sum(CASE WHEN {_COSTED} THEN coalesce(input_tokens, 0) - coalesce(cache_read_tokens, 0)
        - coalesce(cache_creation_tokens, 0) ELSE 0 END),
    sum(CASE WHEN {_COSTED} THEN coalesce(cache_read_tokens, 0) ELSE 0 END),
    sum(CASE WHEN {_COSTED} THEN coalesce(cache_creation_tokens, 0) ELSE 0 END),
    sum(CASE WHEN {_COSTED} THEN coalesce(output_tokens, 0) ELSE 0 END)"""
_COST_COLUMNS = (
    "cost_runs, cost_uncached_input_tokens, cost_cache_read_tokens, cost_cache_creation_tokens,"
    " cost_output_tokens"
)
_COST = """CASE WHEN p.id IS NULL OR r.cost_runs = 0 THEN NULL ELSE (
        r.cost_uncached_input_tokens * p.input_usd_per_mtok
        + r.cost_cache_read_tokens * coalesce(p.cache_read_usd_per_mtok, p.input_usd_per_mtok)
        + r.cost_cache_creation_tokens * coalesce(p.cache_write_usd_per_mtok, p.input_usd_per_mtok)
        + r.cost_output_tokens * p.output_usd_per_mtok
    ) / 1000000.0 END"""
_MEASURES = """runs, finished, duration_ms_sum, duration_ms_min, duration_ms_max, input_tokens,
    output_tokens, total_tokens"""
_LATER = "ttft_count, ttft_ms_sum, ttft_ms_max, attempt_max, last_start_ns, error_example"
_RUN_MEASURES = """count(*), count(duration_ms), sum(duration_ms), min(duration_ms),
    max(duration_ms), sum(input_tokens), sum(output_tokens), sum(total_tokens)"""
_RUN_LATER = """count(ttft_ms), sum(ttft_ms), max(ttft_ms), max(attempt), max(start_ns),
    min(error_message)"""


def _prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


def _view(dialect: str) -> str:
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    prices = importlib.import_module("runspan.storage.migrations.versions.0007_price_origins")
    time, day_date, is_root = initial._TIME[dialect], initial._DAY_DATE[dialect], _IS_ROOT[dialect]
    # Only a group with a cost looks its price up.
    price_join = prices._PRICE_JOIN.replace("ON p.id = (", "ON r.cost_runs > 0 AND p.id = (")
    rolled = f"{_GROUPS}, is_root, {_MEASURES}, {_COST_COLUMNS}, {_LATER}"
    # The runs of the stretches counted one by one (usually none), read stretch by stretch
    # through the index of start times. PostgreSQL would otherwise join them by hashing every
    # run that matches a query's filter (every root, every model call): a lateral subquery,
    # kept apart by OFFSET 0, makes it look each stretch up.
    if dialect == "postgresql":
        counted_runs = (
            f"({_COUNTED}) c CROSS JOIN LATERAL (SELECT * FROM ({_NAMED.format('runs_v')}) named"
            " WHERE named.start_ns >= c.first_ns AND named.start_ns < c.end_ns OFFSET 0) v"
        )
    else:
        counted_runs = (
            f"({_COUNTED}) c JOIN ({_NAMED.format('runs_v')}) v"
            " ON v.start_ns >= c.first_ns AND v.start_ns < c.end_ns"
        )
    return f"""CREATE VIEW runs_daily_v AS
SELECT u.start_day, {day_date.format("u.start_day")} AS day, {_prefixed(_GROUPS, "u")}, u.is_root,
    {_prefixed(_MEASURES, "u")}, u.cost_usd, {_prefixed(_LATER, "u")},
    {time.format("u.last_start_ns")} AS last_time
FROM (
    SELECT r.start_day, {_prefixed(_GROUPS, "r")}, r.is_root, {_prefixed(_MEASURES, "r")},
        {_COST} AS cost_usd, {_prefixed(_LATER, "r")}
    FROM (
        SELECT start_day, start_day * {_DAY_NS} AS start_ns, {rolled}
        FROM runs_daily_traces
        WHERE start_day < {_DAY_FROM} AND start_day NOT IN (
            SELECT start_day FROM rolled_days WHERE stale IS NOT NULL UNION {_PRICED_MIDDAY})
        UNION ALL
        SELECT start_hour / 24, start_hour * {_HOUR_NS}, {rolled}
        FROM runs_hourly_traces
        WHERE start_hour >= {_DAY_FROM} * 24 AND start_hour < {_HOUR_FROM}
            AND start_hour NOT IN (SELECT start_hour FROM rolled_hours WHERE stale IS NOT NULL)
            AND start_hour / 24 NOT IN ({_PRICED_MIDDAY})
        UNION ALL
        SELECT start_day, start_day * {_DAY_NS}, {_GROUPS}, {is_root}, {_RUN_MEASURES},
            {_COST_SUMS}, {_RUN_LATER}
        FROM ({_NAMED.format("runs")}) AS named
        WHERE start_ns BETWEEN {_HOUR_FROM} * {_HOUR_NS} AND {_LAST_NS}
            AND start_day NOT IN ({_PRICED_MIDDAY})
        GROUP BY start_day, {_GROUPS}, {is_root}
    ) r {price_join}
    UNION ALL
    SELECT v.start_day, {_prefixed(_GROUPS, "v")}, {is_root}, {_RUN_MEASURES}, sum(v.cost_usd),
        {_RUN_LATER}
    FROM {counted_runs}
    GROUP BY v.start_day, {_prefixed(_GROUPS, "v")}, {is_root}
) u"""


def _by_trace(table: str, period: str) -> None:
    """The rollups of ``period`` split by trace name too, without histograms."""
    op.create_table(
        table,
        sa.Column(period, sa.BigInteger(), nullable=False),
        sa.Column("service_name", sa.Text()),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("run_type", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("unfinished_reason", sa.String(16)),
        sa.Column("model_name", sa.Text()),
        sa.Column("langgraph_node", sa.Text()),
        sa.Column("is_root", sa.Boolean(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("finished", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms_sum", sa.Float()),
        sa.Column("duration_ms_min", sa.Float()),
        sa.Column("duration_ms_max", sa.Float()),
        sa.Column("input_tokens", sa.BigInteger()),
        sa.Column("output_tokens", sa.BigInteger()),
        sa.Column("total_tokens", sa.BigInteger()),
        sa.Column("cost_runs", sa.BigInteger(), nullable=False),
        sa.Column("cost_uncached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_cache_creation_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_output_tokens", sa.BigInteger(), nullable=False),
        *(sa.Column(name, type_) for name, type_ in _COLUMNS),
        sa.Column("trace_name", sa.Text()),
    )
    op.create_index(f"ix_{table}_{period}", table, [period])


_BY_TRACE = (("runs_daily_traces", "start_day"), ("runs_hourly_traces", "start_hour"))


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in _TABLES:
        for name, type_ in _COLUMNS:
            op.add_column(table, sa.Column(name, type_))
    for table, period in _BY_TRACE:
        _by_trace(table, period)
    # Rolled up without the new columns: to be rolled up again.
    for rolled in ("rolled_days", "rolled_hours"):
        op.execute(f"UPDATE {rolled} SET stale = 'revision-0011' WHERE runs IS NOT NULL")
    op.execute(_view(dialect))
    # Partial indexes: LangGraph's paused threads (queries 15 and 16) without reading every run.
    for table, name, column, predicate in _PARTIAL_INDEXES:
        op.create_index(
            name,
            table,
            [column],
            sqlite_where=sa.text(predicate),
            postgresql_where=sa.text(predicate),
        )
    scale = importlib.import_module("runspan.storage.migrations.versions.0008_scale_indexes")
    for table in ("runs_daily_traces", "runs_hourly_traces", "runs_daily_v"):
        scale.grant_to_readers(table)


def downgrade() -> None:
    for table, name, _column, _predicate in _PARTIAL_INDEXES:
        op.drop_index(name, table)
    op.execute("DROP VIEW IF EXISTS runs_daily_v")
    for table, _period in _BY_TRACE:
        op.drop_table(table)
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for name, _type in reversed(_COLUMNS):
                batch.drop_column(name)

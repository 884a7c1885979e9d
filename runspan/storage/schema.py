"""The tables users query: ``traces``, ``runs`` and ``model_prices``, one definition for both
databases.

Column names are part of runspan's API: people write SQL against them. Times are integer
nanoseconds since the epoch, as OpenTelemetry has them (the ``runs_v``, ``traces_v`` and
``llm_calls`` views, made by the migrations, add readable ``start_time``/``end_time``).
Parent links carry no foreign key: children end, and are written, before their parents.

This module serves the running code; each Alembic revision freezes its own copy of the types.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import JSON, TypeDecorator, TypeEngine

# Constraint names that are the same on both databases, so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

DAY_NS = 86_400 * 10**9

# SQLite's INTEGER PRIMARY KEY is already 64-bit; PostgreSQL needs BIGINT for as many rows.
Identifier = Integer().with_variant(BigInteger(), "postgresql")


class JSONDocument(TypeDecorator[Any]):
    """JSON on SQLite, JSONB on PostgreSQL, written from JSON text that is already valid.

    The tracer serialized inputs and outputs once, on the callback path; the writer hands that
    text straight to the database instead of parsing and dumping it again. Reads return Python
    values as the JSON type does.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            # Imported here: the PostgreSQL dialect is loaded by then, and a SQLite-only
            # `runspan runs` should not pay its import (about 25 ms of a 0.3 s start).
            from sqlalchemy.dialects.postgresql import JSONB  # noqa: PLC0415

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def bind_processor(self, dialect: Dialect) -> None:
        return None  # values are JSON text already (see :mod:`runspan.storage.rows`)


traces = Table(
    "traces",
    metadata,
    Column("trace_id", String(32), primary_key=True),
    Column("root_run_id", String(36)),
    Column("root_span_id", String(16)),
    Column("service_name", Text),
    Column("name", Text),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger),
    Column("duration_ms", Float),
    Column("status", String(16), nullable=False),
    Column("run_count", Integer, nullable=False),
    Column("error_count", Integer, nullable=False),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    # Added by revision 0005: the conversation and user of the trace's runs.
    Column("session_id", Text),
    Column("user_id", Text),
    # Added by revision 0013: the sum of its runs' costs, as priced when the writer last wrote
    # or repriced the trace (runspan.storage.trace_costs). traces_v's cost_usd is always exact.
    Column("cost_usd", Float),
    Index(None, "start_ns"),
    Index(None, "duration_ms"),
    Index(None, "session_id", "start_ns"),
    Index(None, "user_id", "start_ns"),
    Index(None, "cost_usd", "total_tokens"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Identifier, primary_key=True, autoincrement=True),
    Column("run_id", String(36)),
    Column("parent_run_id", String(36)),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("parent_span_id", String(16)),
    Column("service_name", Text),
    Column("name", Text, nullable=False),
    Column("run_type", String(32)),
    Column("span_kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error_type", Text),
    Column("error_message", Text),
    Column("start_ns", BigInteger, nullable=False),
    # UTC days since the epoch, computed by the database so that per-day questions use indexes.
    Column("start_day", BigInteger, Computed(f"start_ns / {DAY_NS}", persisted=True)),
    Column("end_ns", BigInteger),
    Column("duration_ms", Float),
    Column("model_name", Text),
    Column("provider", Text),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    Column("cache_read_tokens", BigInteger),
    Column("cache_creation_tokens", BigInteger),
    Column("reasoning_tokens", BigInteger),
    Column("ttft_ms", Float),
    Column("tags", JSONDocument),
    Column("metadata", JSONDocument),
    Column("attributes", JSONDocument),
    Column("events", JSONDocument),
    Column("inputs", JSONDocument),
    Column("outputs", JSONDocument),
    # Added by revision 0003. Why an unfinished run did not finish: cancelled, abandoned,
    # root_ended or expired.
    Column("unfinished_reason", String(16)),
    # LangGraph: the node a run ran in, a node's attempt under a RetryPolicy (2 and up), and
    # the trace that an invocation resuming an interrupted thread continues.
    Column("langgraph_node", Text),
    Column("attempt", Integer),
    Column("resumes_trace_id", String(32)),
    # Added by revision 0004: time to the first streamed chunk, content or not (ttft_ms is
    # time to the first chunk that carries content).
    Column("first_chunk_ms", Float),
    # Added by revision 0005: the conversation (session.id) and user (user.id) of the run.
    Column("session_id", Text),
    Column("user_id", Text),
    # The same span written twice is one row.
    UniqueConstraint("trace_id", "span_id"),
    # The indexes, as the migrations create them (see the revisions for their reasons).
    Index(None, "run_id"),
    Index(None, "start_ns"),
    Index(None, "end_ns"),
    Index(None, "name", "start_day", "status"),
    Index(None, "session_id"),
    Index(None, "user_id"),
    # Partial indexes more: see declare_partial_indexes.
)


# PostgreSQL's unique key of runs (a partitioned table's holds the partition key, revision 0018).
PARTITIONED_RUNS_KEY = "uq_runs_trace_id_span_id_start_ns"

# Made by revision 0001 only where pg_trgm can be had: no Index object can say that.
_UNDECLARED_INDEXES = frozenset({"ix_runs_inputs_trgm"})


def declared(
    item: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's ``include_object``: autogenerate compares what this module declares, and leaves
    the indexes made outside it alone instead of proposing to drop them; and PostgreSQL's key
    of runs, which holds the partition key (revision 0018), in place of the one declared."""
    if type_ == "index" and name in _UNDECLARED_INDEXES:
        return False
    if type_ == "unique_constraint":
        if reflected and name == PARTITIONED_RUNS_KEY:
            return False
        if not reflected and name == "uq_runs_trace_id_span_id" and compare_to is None:
            return False  # PostgreSQL's: SQLite's is compared (compare_to is its reflection)
    return True


def declare_partial_indexes() -> None:
    """Add the partial indexes of ``runs`` and ``traces`` to :data:`metadata`, for Alembic's
    autogenerate.

    They are not declared with the table: a ``postgresql_where`` makes SQLAlchemy import its
    whole PostgreSQL dialect, about 30 ms of a 0.27 s ``runspan runs`` on SQLite, and the
    running code never needs Index objects (the migrations create the indexes).
    """
    if "ix_runs_running" in {index.name for index in runs.indexes}:
        return
    for table, name, columns, predicate in (
        (
            runs,
            "ix_runs_model_name_start_day",
            ("model_name", "start_day", "input_tokens", "output_tokens"),
            "model_name IS NOT NULL",
        ),
        (runs, "ix_runs_running", ("start_ns",), "status = 'running'"),
        # Partial since revision 0012: a root is not looked up by its parent.
        (runs, "ix_runs_parent_run_id", ("parent_run_id",), "parent_run_id IS NOT NULL"),
        # Added by revision 0011: LangGraph's paused threads and the invocations resuming them.
        (runs, "ix_runs_resumes", ("resumes_trace_id",), "resumes_trace_id IS NOT NULL"),
        (runs, "ix_runs_resuming", ("start_ns",), "resumes_trace_id IS NOT NULL"),
        (traces, "ix_traces_interrupted", ("start_ns",), "status = 'interrupted'"),
    ):
        Index(
            name,
            *(table.c[column] for column in columns),
            sqlite_where=text(predicate),
            postgresql_where=text(predicate),
        )


# Added by revision 0008: each (service, name, span kind) of stored runs once, written by the
# writer with its runs: Jaeger's services and operations, without reading every run.
span_names = Table(
    "span_names",
    metadata,
    Column("service_name", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("span_kind", String(16), primary_key=True),
)

# Added by revision 0009: the slowest runs of each UTC day and run type ('' for other spans)
# (runspan.storage.slowest), kept by the writer, which "slowest first" reads instead of an index
# of every run's duration.
slowest_runs = Table(
    "slowest_runs",
    metadata,
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("start_day", BigInteger, nullable=False),
    Column("run_type", String(32), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Index(None, "start_day", "run_type", "duration_ms"),
    Index(None, "duration_ms"),
)


# Added by revision 0010: runs counted per group for each closed UTC day and each closed hour
# (runspan.storage.rollups), kept by the writer, so that questions over weeks read a few rows a
# day instead of every run (the hours serve the edges of a period). The cost_* sums are of runs
# that reported tokens, split as their cost is computed.
def _rollup_columns(period: str) -> list[Any]:
    return [
        Column(period, BigInteger, nullable=False),
        Column("service_name", Text),
        Column("name", Text, nullable=False),
        Column("run_type", String(32)),
        Column("status", String(16), nullable=False),
        Column("unfinished_reason", String(16)),
        Column("model_name", Text),
        Column("langgraph_node", Text),
        Column("is_root", Boolean, nullable=False),
        Column("runs", BigInteger, nullable=False),
        Column("finished", BigInteger, nullable=False),
        Column("duration_ms_sum", Float),
        Column("duration_ms_min", Float),
        Column("duration_ms_max", Float),
        Column("durations", JSONDocument),
        Column("input_tokens", BigInteger),
        Column("output_tokens", BigInteger),
        Column("total_tokens", BigInteger),
        Column("cost_runs", BigInteger, nullable=False),
        Column("cost_uncached_input_tokens", BigInteger, nullable=False),
        Column("cost_cache_read_tokens", BigInteger, nullable=False),
        Column("cost_cache_creation_tokens", BigInteger, nullable=False),
        Column("cost_output_tokens", BigInteger, nullable=False),
        # Added by revision 0011, for the documented queries: the group's error type, its latest
        # start, an error message of it, its most attempts, and its times to first token.
        Column("error_type", Text),
        Column("last_start_ns", BigInteger),
        Column("error_example", Text),
        Column("attempt_max", Integer),
        Column("ttft_count", BigInteger),
        Column("ttft_ms_sum", Float),
        Column("ttft_ms_max", Float),
        Index(None, period),
    ]


def _rolled_columns(period: str) -> list[Column[Any]]:
    # Which periods are rolled up, and which a late run made stale (``stale`` is set, to a new
    # token by each write, until the period is rolled up again).
    return [
        Column(period, BigInteger, primary_key=True, autoincrement=False),
        Column("runs", BigInteger),
        Column("rolled_ns", BigInteger),
        Column("stale", String(32)),
        # Added by revision 0014: how many distinct tags the period's runs carry, each a row of
        # its ``*_tags`` table; -1 when there were too many to keep, NULL when rolled up before
        # tags were kept. Either way, a tag filter cannot rule the period out.
        Column("tags", Integer),
    ]


runs_daily = Table("runs_daily", metadata, *_rollup_columns("start_day"))
runs_hourly = Table("runs_hourly", metadata, *_rollup_columns("start_hour"))
# Added by revision 0017: ten-minute slices, so that a read counts minutes of runs from ``runs``,
# not the open hour, and an hour is summed from its slices, not counted again.
runs_slices = Table("runs_slices", metadata, *_rollup_columns("start_slice"))


# Added by revision 0011: the same groups split by the trace's name (its root's: the chain or
# graph a run served), without the histograms, so that runs_daily_v can group by it while
# `runspan stats` merges the histograms of fewer rows.
def _trace_rollup_columns(period: str) -> list[Any]:
    kept = [c for c in _rollup_columns(period) if getattr(c, "name", None) != "durations"]
    return [*kept, Column("trace_name", Text)]


runs_daily_traces = Table("runs_daily_traces", metadata, *_trace_rollup_columns("start_day"))
runs_hourly_traces = Table("runs_hourly_traces", metadata, *_trace_rollup_columns("start_hour"))
rolled_days = Table("rolled_days", metadata, *_rolled_columns("start_day"))
rolled_hours = Table("rolled_hours", metadata, *_rolled_columns("start_hour"))
runs_slices_traces = Table("runs_slices_traces", metadata, *_trace_rollup_columns("start_slice"))
rolled_slices = Table("rolled_slices", metadata, *_rolled_columns("start_slice"))


# Added by revision 0014: the distinct tags of each rolled period's runs, so that a tag filter
# reads only the periods whose runs carry it (`runspan runs --tag`).
def _tag_columns(period: str) -> list[Column[Any]]:
    return [
        Column(period, BigInteger, primary_key=True, autoincrement=False),
        Column("tag", Text, primary_key=True),
    ]


runs_daily_tags = Table("runs_daily_tags", metadata, *_tag_columns("start_day"))
runs_hourly_tags = Table("runs_hourly_tags", metadata, *_tag_columns("start_hour"))
runs_slices_tags = Table("runs_slices_tags", metadata, *_tag_columns("start_slice"))

model_prices = Table(
    "model_prices",
    metadata,
    Column("id", Identifier, primary_key=True, autoincrement=True),
    # A SQL LIKE pattern over the lower-cased model name, such as 'gpt-4o-mini%'.
    Column("model_pattern", Text, nullable=False),
    Column("input_usd_per_mtok", Float, nullable=False),
    Column("output_usd_per_mtok", Float, nullable=False),
    Column("cache_read_usd_per_mtok", Float),
    Column("cache_write_usd_per_mtok", Float),
    Column("valid_from_ns", BigInteger, nullable=False),
    Column("source", Text),
    # Added by revision 0007: where the price came from ('seed', 'import' by `runspan prices
    # update`, NULL for yours: yours win, then imported, then seeded), and the provider it is
    # for (NULL: any), as runspan names providers.
    Column("origin", String(16)),
    Column("provider", Text),
    UniqueConstraint("model_pattern", "provider", "valid_from_ns", "origin"),
)

# Added by revision 0007: genai-prices' whole table, as `runspan prices update` imported it.
# Views never read it: the prices of the model names runs have are copied into model_prices
# (origin 'import'), which stays small, since every model run's cost searches it.
imported_prices = Table(
    "imported_prices",
    metadata,
    Column("id", Identifier, primary_key=True, autoincrement=True),
    Column("model_pattern", Text, nullable=False),
    Column("provider", Text),
    Column("input_usd_per_mtok", Float, nullable=False),
    Column("output_usd_per_mtok", Float, nullable=False),
    Column("cache_read_usd_per_mtok", Float),
    Column("cache_write_usd_per_mtok", Float),
    Column("valid_from_ns", BigInteger, nullable=False),
    Column("source", Text),
)

# Added by revision 0006: scores and labels given to runs (runspan.feedback(), `runspan
# feedback`, POST /api/feedback). No foreign key: feedback may come before its run is written.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Identifier, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("trace_id", String(32)),
    Column("key", Text, nullable=False),
    Column("score", Float),
    Column("value", Text),
    Column("comment", Text),
    Column("source", String(16), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Index(None, "run_id"),
    Index(None, "key", "created_ns"),
    Index(None, "trace_id"),
)


# Added by revision 0013: the totals of each conversation (and user), and of each user's UTC
# day, kept by the writer from ``traces`` (runspan.storage.trace_costs), which sessions_v and
# users_daily_v read (their cost while it is priced at the current prices).
def _totals_columns() -> list[Column[Any]]:
    return [
        Column("turns", BigInteger, nullable=False),  # traces
        Column("runs", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("input_tokens", BigInteger),
        Column("output_tokens", BigInteger),
        Column("total_tokens", BigInteger),
        Column("cost_usd", Float),
    ]


sessions = Table(
    "sessions",
    metadata,
    Column("session_id", Text, nullable=False),
    Column("user_id", Text),
    Column("first_ns", BigInteger, nullable=False),
    Column("last_ns", BigInteger, nullable=False),
    *_totals_columns(),
    Index(None, "session_id"),
    Index(None, "cost_usd", "last_ns"),
    Index(None, "last_ns"),
)
users_daily = Table(
    "users_daily",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("start_day", BigInteger, nullable=False),
    *_totals_columns(),
    Index(None, "user_id", "start_day"),
    Index(None, "start_day", "cost_usd"),
)
# Added by revision 0013: one row. ``epoch`` moves on with every change to model_prices (its
# triggers); the stored costs and totals above are exact while ``priced_epoch`` equals it.
# ``repricing_epoch`` and ``repriced_to`` are the progress of the writer's repricing.
price_state = Table(
    "price_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    Column("priced_epoch", BigInteger, nullable=False),
    Column("repricing_epoch", BigInteger),
    Column("repriced_to", Text),
)

#: Run statuses as stored: ``running`` until the run ends; ``interrupted`` for a LangGraph run
#: paused by ``interrupt()``; ``retried`` for a failed attempt that a later attempt replaced.
STATUSES = ("running", "ok", "error", "unfinished", "interrupted", "retried")
#: Why an ``unfinished`` run did not finish.
UNFINISHED_REASONS = ("cancelled", "abandoned", "root_ended", "expired")

"""traces, runs and model_prices, their indexes, and the views for people writing SQL

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Types frozen here, as this revision made them: later changes to the models do not alter it.
_ID = sa.Integer().with_variant(sa.BigInteger(), "postgresql")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Prices in US dollars per million tokens, from the providers' public price pages as of
# 2024-10-01 (openai.com/api/pricing, anthropic.com/pricing). Patterns match lower-cased model
# names with SQL LIKE; the longest matching pattern wins. Edit the table to add your models.
_VALID_FROM_NS = 1_727_740_800 * 10**9  # 2024-10-01T00:00:00Z
_DAY_NS = 86_400 * 10**9
_SEED_PRICES = [
    ("gpt-4o%", 2.50, 10.00, 1.25, None, "https://openai.com/api/pricing/ (2024-10-01)"),
    ("gpt-4o-mini%", 0.15, 0.60, 0.075, None, "https://openai.com/api/pricing/ (2024-10-01)"),
    (
        "claude-3-5-sonnet%",
        3.00,
        15.00,
        0.30,
        3.75,
        "https://www.anthropic.com/pricing (2024-10-01)",
    ),
    (
        "claude-3-5-haiku%",
        0.80,
        4.00,
        0.08,
        1.00,
        "https://www.anthropic.com/pricing (2024-11-05)",
    ),
]

# Readable UTC timestamps from integer nanoseconds, and UTC dates, per database: text on
# SQLite, timestamp and date (without time zone, in UTC) on PostgreSQL, so that date(start_time)
# is the same day on both whatever the session's time zone.
_TIME = {
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', {0} / 1000000000.0, 'unixepoch')",
    "postgresql": "(to_timestamp({0} / 1000000000.0) AT TIME ZONE 'UTC')",
}
_DATE = {
    "sqlite": "date({0} / 1000000000, 'unixepoch')",
    "postgresql": "CAST(to_timestamp({0} / 1000000000) AT TIME ZONE 'UTC' AS DATE)",
}
_DAY_DATE = {
    "sqlite": "date({0} * 86400, 'unixepoch')",
    "postgresql": "CAST(to_timestamp({0} * 86400) AT TIME ZONE 'UTC' AS DATE)",
}

# The price of a model run: the longest matching pattern valid when the run started. A run
# whose model has no price, or that reported no tokens, has no cost (NULL, not 0). Input
# tokens include cached ones, which are priced at the cache rates where the model has them.
_PRICE_JOIN = """
LEFT JOIN model_prices p ON p.id = (
    SELECT mp.id FROM model_prices mp
    WHERE lower(r.model_name) LIKE mp.model_pattern AND mp.valid_from_ns <= r.start_ns
    ORDER BY length(mp.model_pattern) DESC, mp.valid_from_ns DESC
    LIMIT 1
)"""
_COST = """CASE WHEN p.id IS NULL OR (r.input_tokens IS NULL AND r.output_tokens IS NULL)
    THEN NULL ELSE (
        (coalesce(r.input_tokens, 0) - coalesce(r.cache_read_tokens, 0)
            - coalesce(r.cache_creation_tokens, 0)) * p.input_usd_per_mtok
        + coalesce(r.cache_read_tokens, 0)
            * coalesce(p.cache_read_usd_per_mtok, p.input_usd_per_mtok)
        + coalesce(r.cache_creation_tokens, 0)
            * coalesce(p.cache_write_usd_per_mtok, p.input_usd_per_mtok)
        + coalesce(r.output_tokens, 0) * p.output_usd_per_mtok
    ) / 1000000.0 END"""


def _views(dialect: str) -> list[str]:
    time, date, day_date = _TIME[dialect], _DATE[dialect], _DAY_DATE[dialect]
    return [
        f"""CREATE VIEW runs_v AS
SELECT r.*, {time.format("r.start_ns")} AS start_time, {time.format("r.end_ns")} AS end_time,
    {day_date.format("r.start_day")} AS day, {_COST} AS cost_usd
FROM runs r {_PRICE_JOIN}""",
        f"""CREATE VIEW traces_v AS
SELECT t.*, {time.format("t.start_ns")} AS start_time, {time.format("t.end_ns")} AS end_time,
    {date.format("t.start_ns")} AS day,
    (SELECT sum(v.cost_usd) FROM runs_v v WHERE v.trace_id = t.trace_id) AS cost_usd
FROM traces t""",
        """CREATE VIEW llm_calls AS
SELECT * FROM runs_v
WHERE run_type = 'llm' OR (run_type IS NULL AND model_name IS NOT NULL)""",
    ]


def upgrade() -> None:
    op.create_table(
        "traces",
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("root_run_id", sa.String(36)),
        sa.Column("root_span_id", sa.String(16)),
        sa.Column("service_name", sa.Text()),
        sa.Column("name", sa.Text()),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger()),
        sa.Column("duration_ms", sa.Float()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger()),
        sa.Column("output_tokens", sa.BigInteger()),
        sa.Column("total_tokens", sa.BigInteger()),
        sa.PrimaryKeyConstraint("trace_id", name="pk_traces"),
    )
    op.create_index("ix_traces_start_ns", "traces", ["start_ns"])
    op.create_index("ix_traces_duration_ms", "traces", ["duration_ms"])

    op.create_table(
        "runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36)),
        sa.Column("parent_run_id", sa.String(36)),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("parent_span_id", sa.String(16)),
        sa.Column("service_name", sa.Text()),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("run_type", sa.String(32)),
        sa.Column("span_kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_type", sa.Text()),
        sa.Column("error_message", sa.Text()),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        # The UTC day of the start, in days since the epoch: what per-day questions group by,
        # computed by the database so it can be indexed.
        sa.Column(
            "start_day", sa.BigInteger(), sa.Computed(f"start_ns / {_DAY_NS}", persisted=True)
        ),
        sa.Column("end_ns", sa.BigInteger()),
        sa.Column("duration_ms", sa.Float()),
        sa.Column("model_name", sa.Text()),
        sa.Column("provider", sa.Text()),
        sa.Column("input_tokens", sa.BigInteger()),
        sa.Column("output_tokens", sa.BigInteger()),
        sa.Column("total_tokens", sa.BigInteger()),
        sa.Column("cache_read_tokens", sa.BigInteger()),
        sa.Column("cache_creation_tokens", sa.BigInteger()),
        sa.Column("reasoning_tokens", sa.BigInteger()),
        sa.Column("ttft_ms", sa.Float()),
        sa.Column("tags", _JSON),
        sa.Column("metadata", _JSON),
        sa.Column("attributes", _JSON),
        sa.Column("events", _JSON),
        sa.Column("inputs", _JSON),
        sa.Column("outputs", _JSON),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("trace_id", "span_id", name="uq_runs_trace_id_span_id"),
    )
    for columns in (
        ["run_id"],  # a run by its LangChain id
        ["parent_run_id"],  # a run's subtree, walked down by WITH RECURSIVE
        ["start_ns"],  # newest first, time windows
        ["duration_ms"],  # slowest first
        ["name", "start_day", "status"],  # per name per day (covering): error rates
    ):
        op.create_index(f"ix_runs_{'_'.join(columns)}", "runs", columns)
    # Partial indexes: only the rows they serve pay for them on every write.
    op.create_index(
        "ix_runs_model_name_start_day",
        "runs",
        ["model_name", "start_day", "input_tokens", "output_tokens"],  # covering: tokens per day
        sqlite_where=sa.text("model_name IS NOT NULL"),
        postgresql_where=sa.text("model_name IS NOT NULL"),
    )
    op.create_index(
        "ix_runs_running",
        "runs",
        ["start_ns"],
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )

    prices = op.create_table(
        "model_prices",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("model_pattern", sa.Text(), nullable=False),
        sa.Column("input_usd_per_mtok", sa.Float(), nullable=False),
        sa.Column("output_usd_per_mtok", sa.Float(), nullable=False),
        sa.Column("cache_read_usd_per_mtok", sa.Float()),
        sa.Column("cache_write_usd_per_mtok", sa.Float()),
        sa.Column("valid_from_ns", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_model_prices"),
        sa.UniqueConstraint(
            "model_pattern", "valid_from_ns", name="uq_model_prices_model_pattern_valid_from_ns"
        ),
    )
    op.bulk_insert(
        prices,
        [
            {
                "model_pattern": pattern,
                "input_usd_per_mtok": input_price,
                "output_usd_per_mtok": output_price,
                "cache_read_usd_per_mtok": cache_read,
                "cache_write_usd_per_mtok": cache_write,
                "valid_from_ns": _VALID_FROM_NS,
                "source": source,
            }
            for pattern, input_price, output_price, cache_read, cache_write, source in _SEED_PRICES
        ],
    )

    dialect = op.get_bind().dialect.name
    for view in _views(dialect):
        op.execute(view)
    if dialect == "postgresql":
        _text_search_index()


def _text_search_index() -> None:
    """A trigram index for "runs whose input contains a text", where pg_trgm can be had.

    pg_trgm ships with PostgreSQL and is a trusted extension (a database owner may create it);
    where it is missing or not allowed, text search still works, by scanning.
    """
    bind = op.get_bind()
    available = bind.execute(
        sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).scalar_one()
    if not available:
        return
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError:
        savepoint.rollback()
        return
    savepoint.commit()
    op.execute("CREATE INDEX ix_runs_inputs_trgm ON runs USING gin ((inputs::text) gin_trgm_ops)")


def downgrade() -> None:
    for view in ("llm_calls", "traces_v", "runs_v"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_table("model_prices")
    op.drop_table("runs")
    op.drop_table("traces")

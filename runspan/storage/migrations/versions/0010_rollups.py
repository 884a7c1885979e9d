"""runs_daily, runs_hourly, rolled_days, rolled_hours: runs counted per group for each closed UTC
day and hour, kept by the writer, so that questions over weeks (``runspan stats``) read a few
rows a day instead of every run

The tables start empty: the writer rolls up the days and hours already stored a few at a time
between its batches (runspan.storage.rollups); until then, reads count those runs as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _rollup(table: str, period: str) -> None:
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
        sa.Column("durations", _JSON),
        sa.Column("input_tokens", sa.BigInteger()),
        sa.Column("output_tokens", sa.BigInteger()),
        sa.Column("total_tokens", sa.BigInteger()),
        sa.Column("cost_runs", sa.BigInteger(), nullable=False),
        sa.Column("cost_uncached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_cache_creation_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_output_tokens", sa.BigInteger(), nullable=False),
    )
    op.create_index(f"ix_{table}_{period}", table, [period])


def _rolled(table: str, period: str) -> None:
    op.create_table(
        table,
        sa.Column(period, sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("runs", sa.BigInteger()),
        sa.Column("rolled_ns", sa.BigInteger()),
        sa.Column("stale", sa.String(32)),
        sa.PrimaryKeyConstraint(period, name=f"pk_{table}"),
    )


_TABLES = ("runs_daily", "runs_hourly", "rolled_days", "rolled_hours")


def upgrade() -> None:
    _rollup("runs_daily", "start_day")
    _rollup("runs_hourly", "start_hour")
    _rolled("rolled_days", "start_day")
    _rolled("rolled_hours", "start_hour")
    scale = importlib.import_module("runspan.storage.migrations.versions.0008_scale_indexes")
    for table in _TABLES:
        scale.grant_to_readers(table)


def downgrade() -> None:
    for table in _TABLES:
        op.drop_table(table)

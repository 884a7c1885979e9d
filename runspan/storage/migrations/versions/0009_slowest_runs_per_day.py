"""slowest_runs: each day's 100 slowest runs of each run type, kept by the writer, instead of an
index of every run's duration

An index ordered by duration, even by day first, takes each new run in the middle of a large
b-tree: at ten million runs (111,000 a day) an index of (start_day, duration_ms) cost the
writer half as much again as on an empty database, where an index in time order costs nothing
more (bench/scale.py). ``slowest_runs`` is small (100 rows a day and run type) and changes only when
a run is among the slowest of its day and type: "slowest first" reads it, and scans only the
days it cannot vouch for (runspan.storage.queries).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_PER_DAY = 100


def upgrade() -> None:
    op.create_table(
        "slowest_runs",
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("start_day", sa.BigInteger(), nullable=False),
        # '' for spans that are not LangChain runs, so that a day's groups have no NULL.
        sa.Column("run_type", sa.String(32), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("trace_id", "span_id", name="pk_slowest_runs"),
    )
    op.create_index(
        "ix_slowest_runs_start_day_run_type_duration_ms",
        "slowest_runs",
        ["start_day", "run_type", "duration_ms"],
    )
    # Slowest first over every day: read in order, each joined to its run, and stopped early.
    op.create_index("ix_slowest_runs_duration_ms", "slowest_runs", ["duration_ms"])
    op.execute(
        f"""INSERT INTO slowest_runs (trace_id, span_id, start_day, run_type, start_ns, duration_ms)
SELECT trace_id, span_id, start_day, run_type, start_ns, duration_ms FROM (
    SELECT trace_id, span_id, start_day, coalesce(run_type, '') AS run_type, start_ns,
        duration_ms, row_number() OVER (
            PARTITION BY start_day, coalesce(run_type, '') ORDER BY duration_ms DESC
        ) AS n
    FROM runs WHERE duration_ms IS NOT NULL AND status <> 'running'
) AS ranked
WHERE n <= {_PER_DAY}"""
    )
    scale = importlib.import_module("runspan.storage.migrations.versions.0008_scale_indexes")
    scale.grant_to_readers("slowest_runs")


def downgrade() -> None:
    op.drop_table("slowest_runs")

"""ix_runs_parent_run_id holds only the runs that have a parent

The roots (parent_run_id NULL) were a tenth of its entries. SQLite's planner took the index for
``parent_run_id IS NULL`` (its statistics count a NULL as one value among many): `runspan runs
--roots` read every root of the history and sorted them, 6 s at ten million runs, where the
index of start times finds the newest roots at once. A run's children (``parent_run_id = ?``)
are still found through it, and the writer no longer adds a root to it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_NAME = "ix_runs_parent_run_id"
_HAS_PARENT = "parent_run_id IS NOT NULL"


def upgrade() -> None:
    op.drop_index(_NAME, table_name="runs")
    op.create_index(
        _NAME,
        "runs",
        ["parent_run_id"],
        sqlite_where=sa.text(_HAS_PARENT),
        postgresql_where=sa.text(_HAS_PARENT),
    )


def downgrade() -> None:
    op.drop_index(_NAME, table_name="runs")
    op.create_index(_NAME, "runs", ["parent_run_id"])

"""runs.end_ns indexed, for runs that ended in a time window (`runspan export --since/--until`)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_end_ns", "runs", ["end_ns"])


def downgrade() -> None:
    op.drop_index("ix_runs_end_ns", table_name="runs")

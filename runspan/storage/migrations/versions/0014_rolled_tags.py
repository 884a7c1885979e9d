"""runs_daily_tags and runs_hourly_tags: the distinct tags of each rolled day's and hour's runs,
so that a tag filter (`runspan runs --tag`) reads only the periods whose runs carry the tag; and
rolled_days.tags, rolled_hours.tags, how many there are (-1: too many to keep).

The periods rolled up before this revision have no tags yet (``tags`` is NULL): a tag filter
reads them as before, and the writer rolls them up again in the background, after what is due.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_PERIODS = (
    ("rolled_days", "runs_daily_tags", "start_day"),
    ("rolled_hours", "runs_hourly_tags", "start_hour"),
)


def upgrade() -> None:
    scale = importlib.import_module("runspan.storage.migrations.versions.0008_scale_indexes")
    for rolled, tags, column in _PERIODS:
        op.add_column(rolled, sa.Column("tags", sa.Integer()))
        op.create_table(
            tags,
            sa.Column(column, sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("tag", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint(column, "tag", name=f"pk_{tags}"),
        )
        scale.grant_to_readers(tags)


def downgrade() -> None:
    for rolled, tags, _column in _PERIODS:
        op.drop_table(tags)
        # Not a batch copy: on SQLite, runs_daily_v reads the rolled tables.
        op.execute(f"ALTER TABLE {rolled} DROP COLUMN tags")

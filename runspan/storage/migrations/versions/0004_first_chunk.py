"""runs.first_chunk_ms: time to the first streamed chunk, apart from ttft_ms, which is now time
to the first chunk with content (older rows measured the first chunk: they keep that value in
both); the views made again to show it

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_VIEWS = ("llm_calls", "traces_v", "runs_v")  # dependents first


def _views(dialect: str) -> list[str]:
    # 0001's views, made again: PostgreSQL expands their ``r.*`` when they are made.
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    views: list[str] = initial._views(dialect)
    return views


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.add_column("runs", sa.Column("first_chunk_ms", sa.Float()))
    op.execute("UPDATE runs SET first_chunk_ms = ttft_ms WHERE ttft_ms IS NOT NULL")
    for statement in _views(dialect):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_column("runs", "first_chunk_ms")
    for statement in _views(dialect):
        op.execute(statement)

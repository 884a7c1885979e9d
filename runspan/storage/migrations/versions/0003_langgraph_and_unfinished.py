"""runs.unfinished_reason, langgraph_node, attempt and resumes_trace_id, filled in from what
older rows hold in their attributes and metadata; the views made again to show them

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_VIEWS = ("llm_calls", "traces_v", "runs_v")  # dependents first
# Values older rows hold, per database: the tracer's attribute, and LangGraph's metadata key.
_FILL = {
    "sqlite": (
        "json_extract(attributes, '$.\"runspan.unfinished.reason\"')",
        "json_extract(metadata, '$.langgraph_node')",
    ),
    "postgresql": (
        "attributes ->> 'runspan.unfinished.reason'",
        "metadata ->> 'langgraph_node'",
    ),
}


def _views(dialect: str) -> list[str]:
    # The views are 0001's, unchanged: made again so that PostgreSQL, which expands the
    # views' ``r.*`` when they are made, shows the new columns.
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    views: list[str] = initial._views(dialect)
    return views


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.add_column("runs", sa.Column("unfinished_reason", sa.String(16)))
    op.add_column("runs", sa.Column("langgraph_node", sa.Text()))
    op.add_column("runs", sa.Column("attempt", sa.Integer()))
    op.add_column("runs", sa.Column("resumes_trace_id", sa.String(32)))
    reason, node = _FILL[dialect]
    op.execute(f"UPDATE runs SET unfinished_reason = {reason} WHERE status = 'unfinished'")
    op.execute(f"UPDATE runs SET langgraph_node = {node} WHERE metadata IS NOT NULL")
    for statement in _views(dialect):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for name in ("resumes_trace_id", "attempt", "langgraph_node", "unfinished_reason"):
        op.drop_column("runs", name)
    for statement in _views(dialect):
        op.execute(statement)

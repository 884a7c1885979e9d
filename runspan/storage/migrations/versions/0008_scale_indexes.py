"""Indexes for tens of millions of runs: no index of every run's duration, and span names in a
table of their own

- ``ix_runs_duration_ms`` goes: a run's duration is random, so each new row went into the middle
  of it, and the writer's cost per span grew with the table. Revision 0009's ``slowest_runs``
  answers "slowest first" instead.
- ``span_names``: each (service, name, span kind) once, written by the writer, so that what
  Jaeger asks first (services, operations) reads a small table instead of every run.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_runs_duration_ms", table_name="runs")
    op.create_table(
        "span_names",
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("span_kind", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("service_name", "name", "span_kind", name="pk_span_names"),
    )
    op.execute(
        "INSERT INTO span_names (service_name, name, span_kind)"
        " SELECT DISTINCT service_name, name, span_kind FROM runs"
        " WHERE service_name IS NOT NULL"
    )
    grant_to_readers("span_names")


def grant_to_readers(table: str) -> None:
    """PostgreSQL: roles that can read runs (``runspan db create-reader``'s) may read ``table``
    too."""
    if op.get_bind().dialect.name != "postgresql":
        return
    readers = op.get_bind().execute(
        sa.text(
            "SELECT DISTINCT grantee FROM information_schema.role_table_grants"
            " WHERE table_name = 'runs' AND privilege_type = 'SELECT'"
            " AND grantee <> current_user"
        )
    )
    for (role,) in readers:
        quoted = '"' + str(role).replace('"', '""') + '"'
        op.execute(f"GRANT SELECT ON {table} TO {quoted}")


def downgrade() -> None:
    op.drop_table("span_names")
    op.create_index("ix_runs_duration_ms", "runs", ["duration_ms"])

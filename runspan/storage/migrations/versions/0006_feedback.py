"""feedback: scores and labels given to runs, and feedback_v, each joined to its run

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.Integer().with_variant(sa.BigInteger(), "postgresql")
_TIME = {
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', f.created_ns / 1000000000.0, 'unixepoch')",
    "postgresql": "(to_timestamp(f.created_ns / 1000000000.0) AT TIME ZONE 'UTC')",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "feedback",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("score", sa.Float()),
        sa.Column("value", sa.Text()),
        sa.Column("comment", sa.Text()),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_run_id", "feedback", ["run_id"])
    op.create_index("ix_feedback_key_created_ns", "feedback", ["key", "created_ns"])
    op.create_index("ix_feedback_trace_id", "feedback", ["trace_id"])
    op.execute(
        f"""CREATE VIEW feedback_v AS
SELECT f.*, {_TIME[dialect]} AS created_time, coalesce(f.trace_id, r.trace_id) AS run_trace_id,
    r.name AS run_name, r.run_type, r.status AS run_status, r.model_name, r.session_id,
    r.user_id
FROM feedback f LEFT JOIN runs r ON r.run_id = f.run_id"""
    )
    if dialect == "postgresql":
        # Roles that can read runs (runspan db create-reader's) may read feedback too.
        readers = op.get_bind().execute(
            sa.text(
                "SELECT DISTINCT grantee FROM information_schema.role_table_grants"
                " WHERE table_name = 'runs' AND privilege_type = 'SELECT'"
                " AND grantee <> current_user"
            )
        )
        for (role,) in readers:
            quoted = '"' + str(role).replace('"', '""') + '"'
            op.execute(f"GRANT SELECT ON feedback, feedback_v TO {quoted}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS feedback_v")
    op.drop_table("feedback")

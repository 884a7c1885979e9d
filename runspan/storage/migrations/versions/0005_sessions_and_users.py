"""runs.session_id and runs.user_id (session.id and user.id), the same on traces, indexed; the
values filled from the metadata existing runs already hold; the views made again, and
sessions_v: one row per conversation

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_VIEWS = ("sessions_v", "llm_calls", "traces_v", "runs_v")  # dependents first

# Where the metadata of runs stored before this revision names the conversation and the user:
# the keys the tracer reads (runspan.tracer.identity.SESSION_KEYS and USER_KEY), in that order.
_MEMBER = {
    "sqlite": "json_extract(metadata, '$.\"{0}\"')",
    "postgresql": "(metadata ->> '{0}')",
}
_SESSION_KEYS = ("session_id", "thread_id", "conversation_id")
_USER_KEY = "user_id"

_SESSIONS = {
    "sqlite": """CREATE VIEW sessions_v AS
SELECT t.session_id, t.user_id,
    min(t.start_ns) AS first_ns, max(coalesce(t.end_ns, t.start_ns)) AS last_ns,
    strftime('%Y-%m-%d %H:%M:%f', min(t.start_ns) / 1000000000.0, 'unixepoch') AS first_time,
    strftime('%Y-%m-%d %H:%M:%f', max(coalesce(t.end_ns, t.start_ns)) / 1000000000.0,
        'unixepoch') AS last_time,
    count(*) AS turns, sum(t.run_count) AS runs, sum(t.error_count) AS errors,
    sum(t.input_tokens) AS input_tokens, sum(t.output_tokens) AS output_tokens,
    sum(t.total_tokens) AS total_tokens, sum(t.cost_usd) AS cost_usd
FROM traces_v t
WHERE t.session_id IS NOT NULL
GROUP BY t.session_id, t.user_id""",
    "postgresql": """CREATE VIEW sessions_v AS
SELECT t.session_id, t.user_id,
    min(t.start_ns) AS first_ns, max(coalesce(t.end_ns, t.start_ns)) AS last_ns,
    (to_timestamp(min(t.start_ns) / 1000000000.0) AT TIME ZONE 'UTC') AS first_time,
    (to_timestamp(max(coalesce(t.end_ns, t.start_ns)) / 1000000000.0) AT TIME ZONE 'UTC')
        AS last_time,
    count(*) AS turns, sum(t.run_count) AS runs, sum(t.error_count) AS errors,
    sum(t.input_tokens) AS input_tokens, sum(t.output_tokens) AS output_tokens,
    sum(t.total_tokens) AS total_tokens, sum(t.cost_usd) AS cost_usd
FROM traces_v t
WHERE t.session_id IS NOT NULL
GROUP BY t.session_id, t.user_id""",
}


def _views(dialect: str) -> list[str]:
    # 0001's views, made again (PostgreSQL expands their ``r.*`` when they are made), and
    # sessions_v over traces_v.
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    views: list[str] = initial._views(dialect)
    return [*views, _SESSIONS[dialect]]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for table in ("runs", "traces"):
        op.add_column(table, sa.Column("session_id", sa.Text()))
        op.add_column(table, sa.Column("user_id", sa.Text()))
    member = _MEMBER[dialect]
    session = "coalesce(" + ", ".join(member.format(key) for key in _SESSION_KEYS) + ")"
    op.execute(
        f"UPDATE runs SET session_id = {session}, user_id = {member.format(_USER_KEY)}"
        " WHERE metadata IS NOT NULL"
    )
    # A root decides for its trace (runspan.tracer.identity): runs without metadata of their
    # own take their trace's.
    op.execute(
        """UPDATE traces SET
    session_id = (SELECT max(r.session_id) FROM runs r WHERE r.trace_id = traces.trace_id),
    user_id = (SELECT max(r.user_id) FROM runs r WHERE r.trace_id = traces.trace_id)"""
    )
    op.execute(
        """UPDATE runs SET
    session_id = coalesce(session_id,
        (SELECT t.session_id FROM traces t WHERE t.trace_id = runs.trace_id)),
    user_id = coalesce(user_id, (SELECT t.user_id FROM traces t WHERE t.trace_id = runs.trace_id))
WHERE session_id IS NULL OR user_id IS NULL"""
    )
    op.create_index("ix_runs_session_id", "runs", ["session_id"])
    op.create_index("ix_runs_user_id", "runs", ["user_id"])
    op.create_index("ix_traces_session_id_start_ns", "traces", ["session_id", "start_ns"])
    op.create_index("ix_traces_user_id_start_ns", "traces", ["user_id", "start_ns"])
    for statement in _views(dialect):
        op.execute(statement)
    if dialect == "postgresql":
        _grant_views_to_readers()


def _grant_views_to_readers() -> None:
    """The views were made again, and PostgreSQL drops an object's grants with it: a role that
    can read ``runs`` (one made by ``runspan db create-reader``) may read the views again."""
    readers = op.get_bind().execute(
        sa.text(
            "SELECT DISTINCT grantee FROM information_schema.role_table_grants"
            " WHERE table_name = 'runs' AND privilege_type = 'SELECT'"
            " AND grantee <> current_user"
        )
    )
    for (role,) in readers:
        quoted = '"' + str(role).replace('"', '""') + '"'
        op.execute(f"GRANT SELECT ON runs_v, traces_v, llm_calls, sessions_v TO {quoted}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_index("ix_traces_user_id_start_ns", "traces")
    op.drop_index("ix_traces_session_id_start_ns", "traces")
    op.drop_index("ix_runs_user_id", "runs")
    op.drop_index("ix_runs_session_id", "runs")
    for table in ("traces", "runs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("user_id")
            batch.drop_column("session_id")
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    for statement in initial._views(dialect):
        op.execute(statement)

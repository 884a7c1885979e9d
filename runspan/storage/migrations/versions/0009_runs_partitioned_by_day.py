"""PostgreSQL: runs partitioned by day (range of start_ns), so that retention drops whole days

The table is made again, partitioned, and the runs copied into it: one partition a UTC day that
has runs, the days around today, and ``runs_default`` for the rest. PostgreSQL wants the
partition key in every unique constraint: the primary key becomes (id, start_ns), and "the
same span written twice is one row" is (trace_id, span_id, start_ns), which holds since a span's
start never changes between its writes. The views and the readers' grants are made again as
they were. SQLite: nothing changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import datetime as dt
import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_DAY_NS = 86_400 * 10**9
_EPOCH = dt.date(1970, 1, 1)
# Dependents first, as they are dropped; made again in the reverse order.
_VIEWS = ("feedback_v", "sessions_v", "llm_calls", "traces_v", "runs_v")
_INDEXES = (
    ("ix_runs_run_id", "run_id", None),
    ("ix_runs_parent_run_id", "parent_run_id", None),
    ("ix_runs_start_ns", "start_ns", None),
    ("ix_runs_end_ns", "end_ns", None),
    ("ix_runs_start_day_duration_ms", "start_day, duration_ms", None),
    ("ix_runs_name_start_day_status", "name, start_day, status", None),
    ("ix_runs_session_id", "session_id", None),
    ("ix_runs_user_id", "user_id", None),
    (
        "ix_runs_model_name_start_day",
        "model_name, start_day, input_tokens, output_tokens",
        "model_name IS NOT NULL",
    ),
    ("ix_runs_running", "start_ns", "status = 'running'"),
)


def _partition(day: int) -> str:
    name = "runs_" + (_EPOCH + dt.timedelta(days=day)).strftime("%Y%m%d")
    return (
        f"CREATE TABLE {name} PARTITION OF runs_by_day"
        f" FOR VALUES FROM ({day * _DAY_NS}) TO ({(day + 1) * _DAY_NS})"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(partitioned=False)


def _rebuild(*, partitioned: bool) -> None:
    """Make ``runs`` again, partitioned by day or as one table, with its runs, indexes, views
    and grants."""
    bind = op.get_bind()
    found = bind.execute(
        sa.text(
            "SELECT viewname, definition FROM pg_views"
            " WHERE schemaname = current_schema() AND viewname = ANY(:names)"
        ),
        {"names": list(_VIEWS)},
    )
    views: dict[str, str] = {str(row[0]): str(row[1]) for row in found}
    readers = list(
        bind.execute(
            sa.text(
                "SELECT DISTINCT grantee FROM information_schema.role_table_grants"
                " WHERE table_name = 'runs' AND privilege_type = 'SELECT'"
                " AND grantee <> current_user"
            )
        ).scalars()
    )
    trigram = bool(
        bind.execute(
            sa.text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_runs_inputs_trgm'")
        ).scalar_one()
    )
    for name in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")

    op.execute(
        "CREATE TABLE runs_by_day (LIKE runs INCLUDING DEFAULTS INCLUDING GENERATED)"
        + (" PARTITION BY RANGE (start_ns)" if partitioned else "")
    )
    if partitioned:
        today = time.time_ns() // _DAY_NS
        days = set(range(today - 1, today + 4))
        days.update(bind.execute(sa.text("SELECT DISTINCT start_day FROM runs")).scalars())
        for day in sorted(days):
            op.execute(_partition(day))
        op.execute("CREATE TABLE runs_default PARTITION OF runs_by_day DEFAULT")
    columns = bind.execute(
        sa.text(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'runs'"
            " AND is_generated = 'NEVER' ORDER BY ordinal_position"
        )
    ).scalars()
    listed = ", ".join(columns)
    op.execute(f"INSERT INTO runs_by_day ({listed}) SELECT {listed} FROM runs")
    # The id sequence outlives the old table: the new one's default draws from it.
    op.execute("ALTER SEQUENCE runs_id_seq OWNED BY NONE")
    op.execute("DROP TABLE runs")  # and, partitioned, its partitions
    op.execute("ALTER TABLE runs_by_day RENAME TO runs")
    op.execute("ALTER SEQUENCE runs_id_seq OWNED BY runs.id")
    key = ", start_ns" if partitioned else ""
    op.execute(f"ALTER TABLE runs ADD CONSTRAINT pk_runs PRIMARY KEY (id{key})")
    op.execute(
        f"ALTER TABLE runs ADD CONSTRAINT uq_runs_trace_id_span_id UNIQUE (trace_id, span_id{key})"
    )
    for name, indexed, predicate in _INDEXES:
        where = f" WHERE {predicate}" if predicate else ""
        op.execute(f"CREATE INDEX {name} ON runs ({indexed}){where}")
    if trigram:
        op.execute(
            "CREATE INDEX ix_runs_inputs_trgm ON runs USING gin ((inputs::text) gin_trgm_ops)"
        )
    for name in reversed(_VIEWS):
        if name in views:
            op.execute(f"CREATE VIEW {name} AS {views[name]}")
    for role in readers:
        quoted = '"' + str(role).replace('"', '""') + '"'
        op.execute(f"GRANT SELECT ON runs, {', '.join(views)} TO {quoted}")

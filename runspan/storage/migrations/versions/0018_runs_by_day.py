"""PostgreSQL: runs partitioned by UTC day (a range of start_ns per partition)

Retention then drops a day's partition instead of deleting its rows one by one (a busy service
writes millions a day, and their deletion left as much dead space for VACUUM). A partition is
named ``runs_pYYYYMMDD``; the writer makes the next days' ahead, and a day's on first use (a late
or early span). A partitioned table's unique keys hold its partition key: the primary key is
(id, start_ns) and a span is unique by (trace_id, span_id, start_ns); a span's start never
changes between its writes.

The runs are copied into the new table in the migration's transaction (about a minute per
million runs), with the views that read them made again and their grants given back. SQLite is
left as it was: its retention deletes in chunks and gives the space back.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

import datetime
import re

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_DAY_NS = 86_400 * 10**9
_EPOCH = datetime.date(1970, 1, 1)
_OLD = "runs_old"
_UNIQUE = ("pk_runs", "uq_runs_trace_id_span_id", "uq_runs_trace_id_span_id_start_ns")

# Views reading runs, directly or through another view, with their longest path from runs:
# each is made again after every view it reads.
_DEPENDENT_VIEWS = """
WITH RECURSIVE reading(oid, depth) AS (
    SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.refobjid = CAST(:table AS regclass) AND r.ev_class <> d.refobjid
    UNION
    SELECT r.ev_class, reading.depth + 1 FROM reading
    JOIN pg_depend d ON d.refobjid = reading.oid JOIN pg_rewrite r ON r.oid = d.objid
    WHERE r.ev_class <> reading.oid
)
SELECT CAST(CAST(oid AS regclass) AS text), max(depth), pg_get_viewdef(oid),
       (SELECT relkind FROM pg_class WHERE pg_class.oid = reading.oid)
FROM reading GROUP BY oid ORDER BY 2
"""


_KINDS = {"v": "VIEW", "m": "MATERIALIZED VIEW"}
# As revision 0013 set it: a trace holds about ten runs, whatever the statistics say. On the
# partitioned table it also holds for the estimate over all partitions (_inherited).
_TRACE_ID_DISTINCT = "n_distinct = -0.1, n_distinct_inherited = -0.1"


def partition_name(day: int) -> str:
    """As runspan.storage.partitions names them (a revision keeps its own copy)."""
    return "runs_p" + (_EPOCH + datetime.timedelta(days=day)).strftime("%Y%m%d")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild_runs(partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild_runs(partitioned=False)


def _rebuild_runs(*, partitioned: bool) -> None:
    """Make ``runs`` again, partitioned by day or not, with its rows, ids, indexes, the views
    that read it and their grants."""
    bind = op.get_bind()
    # What this makes belongs to runs' owner, as what it replaces did (the sequence moves only
    # between tables of one owner). runspan's upgrade runs every revision as that owner; this
    # one makes sure of it also when run by other means.
    owner = bind.execute(
        sa.text(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'runs'"
            " AND schemaname = current_schema()"
        )
    ).scalar_one()
    acting = owner != bind.execute(sa.text("SELECT current_user")).scalar_one()
    if acting:
        op.execute(f"SET LOCAL ROLE {_quoted(owner)}")
    views = bind.execute(sa.text(_DEPENDENT_VIEWS), {"table": "runs"}).all()
    grants = bind.execute(
        sa.text(
            "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants"
            " WHERE table_name = ANY(:names) AND table_schema = current_schema()"
            " AND grantee <> current_user"
        ),
        {"names": ["runs", *(name for name, *_ in views)]},
    ).all()
    for name, _depth, _definition, kind in reversed(views):
        op.execute(f"DROP {_KINDS[kind]} {name}")
    index_definitions = [
        re.sub(r" ON (ONLY )?(\S+\.)?runs USING ", " ON runs USING ", definition)
        for definition in bind.execute(
            sa.text(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'runs'"
                " AND schemaname = current_schema() AND NOT (indexname = ANY(:unique))"
            ),
            {"unique": list(_UNIQUE)},
        ).scalars()
    ]
    op.execute(f"ALTER TABLE runs RENAME TO {_OLD}")
    op.execute(
        f"CREATE TABLE runs (LIKE {_OLD} INCLUDING DEFAULTS INCLUDING GENERATED)"
        + (" PARTITION BY RANGE (start_ns)" if partitioned else "")
    )
    # The ids go on from where they were: the sequence moves to the new table before the old
    # one, which owns it, is dropped.
    op.execute("ALTER SEQUENCE runs_id_seq OWNED BY runs.id")
    days = list(bind.execute(sa.text(f"SELECT DISTINCT start_day FROM {_OLD}")).scalars())
    if partitioned:
        for day in days:
            op.execute(
                f"CREATE TABLE {partition_name(day)} PARTITION OF runs"
                f" FOR VALUES FROM ({day * _DAY_NS}) TO ({(day + 1) * _DAY_NS})"
            )
    columns = ", ".join(
        _quoted(column)
        for column in bind.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :table"
                " AND table_schema = current_schema() AND is_generated = 'NEVER'"
                " ORDER BY ordinal_position"
            ),
            {"table": _OLD},
        ).scalars()
    )
    op.execute(f"INSERT INTO runs ({columns}) SELECT {columns} FROM {_OLD}")
    op.execute(f"DROP TABLE {_OLD}")  # with its partitions, if it had them
    # Indexes built once the rows are in: faster than row by row.
    if partitioned:
        op.execute("ALTER TABLE runs ADD CONSTRAINT pk_runs PRIMARY KEY (id, start_ns)")
        op.execute(
            "ALTER TABLE runs ADD CONSTRAINT uq_runs_trace_id_span_id_start_ns"
            " UNIQUE (trace_id, span_id, start_ns)"
        )
    else:
        op.execute("ALTER TABLE runs ADD CONSTRAINT pk_runs PRIMARY KEY (id)")
        op.execute(
            "ALTER TABLE runs ADD CONSTRAINT uq_runs_trace_id_span_id UNIQUE (trace_id, span_id)"
        )
    for definition in index_definitions:
        op.execute(definition)
    # Revision 0013's estimate of a trace's runs, which an option of the old table held.
    op.execute(f"ALTER TABLE runs ALTER COLUMN trace_id SET ({_TRACE_ID_DISTINCT})")
    if partitioned:
        for day in days:
            name = partition_name(day)
            op.execute(f"ALTER TABLE {name} ALTER COLUMN trace_id SET (n_distinct = -0.1)")
    for name, _depth, definition, kind in views:
        op.execute(f"CREATE {_KINDS[kind]} {name} AS {definition}")
    for grantee, table, privilege in grants:
        to = "PUBLIC" if grantee == "PUBLIC" else _quoted(grantee)
        op.execute(f"GRANT {privilege} ON {_quoted(table)} TO {to}")
    op.execute("ANALYZE runs")
    if acting:
        op.execute("RESET ROLE")

"""PostgreSQL: runs_daily_v counts its stale stretches in a function that runs without JIT, so
that the planner no longer prices them into every query of the view

runs_daily_v counts from runs what the rollups cannot answer as they stand: stale days and
hours, and days in which a price took effect. There are usually none, but the planner priced
that part of the view at 300,000 to 750,000 (a day's runs, hashed against every trace, for each
stretch it guessed), past PostgreSQL's default thresholds for compiling a query (JIT). So in a
session with JIT on, as psql's and most tools' are, the documented queries over the view took
0.35 to 7.6 s at ten million runs, compiling a plan that then ran in 40 to 170 ms.

That part is now a set-returning function declared to return a few rows, which the planner does
not look into. Its own query still runs, with the same text, when the view is read, so the
answer is the same; and the function runs it without JIT. runspan's own readers had JIT off
already. SQLite has no JIT: its view is unchanged. A later revision that makes runs_daily_v
again on PostgreSQL has to keep that part in the function (or make it again).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib

from alembic import op
from sqlalchemy import text

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_FUNCTION = "runspan_daily_counted"
_ARM = "\n    UNION ALL\n    SELECT v.start_day"  # where 0011's view starts counting stretches
_END = "\n) u"


def _split(view: str) -> tuple[str, str]:
    """0011's runs_daily_v: the view up to its counted stretches, and their query."""
    head, found, arm = view.rpartition(_ARM)
    assert found, "runs_daily_v's counted stretches changed"
    assert arm.endswith(_END), "runs_daily_v's end changed"
    return head, "SELECT v.start_day" + arm[: -len(_END)]


def _column_types(query: str) -> list[str]:
    """The types of ``query``'s columns, as PostgreSQL resolves them (typmods included), read
    off a view made and dropped in the migration's transaction (not a temporary one: a
    database may deny its roles temporary objects)."""
    connection = op.get_bind()
    count = len(connection.execute(text(f"SELECT * FROM ({query}) q LIMIT 0")).keys())
    names = ", ".join(f"c{i}" for i in range(1, count + 1))
    connection.execute(text(f"CREATE VIEW runspan_counted_shape ({names}) AS {query}"))
    types = list(
        connection.execute(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'runspan_counted_shape'::regclass AND attnum > 0"
                " ORDER BY attnum"
            )
        ).scalars()
    )
    connection.execute(text("DROP VIEW runspan_counted_shape"))
    return types


def install(view: str) -> None:
    """Make ``view`` (a runs_daily_v written as revision 0011's is) with its counted stretches
    in the function; a later revision that makes the view again calls this too."""
    head, counted = _split(view)
    types = _column_types(counted)
    columns = ", ".join(f"c{i} {type_}" for i, type_ in enumerate(types, 1))
    # Not inlined (a SET clause prevents it), so the planner takes the declared 100 rows for
    # it. STABLE: it reads the caller's snapshot, as the view did.
    op.execute(
        f"CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS TABLE ({columns}) LANGUAGE sql STABLE"
        f" ROWS 100 SET jit = off SET search_path FROM CURRENT AS $$ {counted} $$"
    )
    # A function's result has no typmods: the view casts them back, so that its columns keep
    # their types (which CREATE OR REPLACE VIEW requires, and the readers' grant with it).
    selected = ", ".join(
        f"CAST(c{i} AS {type_})" if "(" in type_ else f"c{i}" for i, type_ in enumerate(types, 1)
    )
    made = f"{head}\n    UNION ALL\n    SELECT {selected} FROM {_FUNCTION}(){_END}"
    op.execute(made.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    daily = importlib.import_module("runspan.storage.migrations.versions.0011_daily_view")
    install(daily._view("postgresql"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    daily = importlib.import_module("runspan.storage.migrations.versions.0011_daily_view")
    op.execute(daily._view("postgresql").replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
    op.execute(f"DROP FUNCTION {_FUNCTION}()")

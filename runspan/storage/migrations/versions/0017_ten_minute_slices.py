"""runs_slices, runs_slices_traces, runs_slices_tags, rolled_slices: the runs of each closed
ten-minute slice counted per group, as the hours are; runs_daily_v reads them after the hours it
holds, so that it counts from runs minutes of the newest runs, not the open hour

At hundreds of runs a second the open hour is up to a million runs, which every read over
runs_daily_v (and `runspan stats`) counted: seconds a read. A slice is rolled up four minutes
after it ends, and an hour is then summed from its six slices instead of counted again.

The tables start empty: the writer rolls up only the slices after the newest hour it has rolled
up (a stored history's slices would be its every run counted again, for rows no read uses), and
keeps a day of them. Until then the view counts those runs from runs, as before.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

SLICE_NS = 600 * 10**9
_SLICES_A_DAY = 144
_TABLES = ("runs_slices", "runs_slices_traces", "rolled_slices", "runs_slices_tags")


def _revision(name: str) -> ModuleType:
    return importlib.import_module(f"runspan.storage.migrations.versions.{name}")


_DAILY = _revision("0011_daily_view")
#: The first slice runs_slices does not hold yet, after the hours runs_hourly holds: the view
#: counts from runs what starts there.
SLICE_FROM = (
    f"(SELECT coalesce(max(start_slice) + 1, {_DAILY._HOUR_FROM} * 6) FROM rolled_slices"
    f" WHERE runs IS NOT NULL AND start_slice >= {_DAILY._HOUR_FROM} * 6)"
)


def _replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"runs_daily_v changed: {old!r}"
    return text.replace(old, new)


def _view(dialect: str) -> str:
    """Revision 0011's runs_daily_v with the slices read between the hours and the runs."""
    daily = _DAILY
    hour_from, priced = daily._HOUR_FROM, daily._PRICED_MIDDAY
    in_slices = f"start_slice >= {hour_from} * 6 AND start_slice < {SLICE_FROM}"
    rolled = f"{daily._GROUPS}, is_root, {daily._MEASURES}, {daily._COST_COLUMNS}, {daily._LATER}"
    view = daily._view(dialect)
    runs_from = f"WHERE start_ns BETWEEN {hour_from} * {daily._HOUR_NS} AND"
    view = _replaced(view, runs_from, f"WHERE start_ns BETWEEN {SLICE_FROM} * {SLICE_NS} AND")
    runs_arm = "        UNION ALL\n        SELECT start_day, start_day * "
    slices_arm = f"""        UNION ALL
        SELECT start_slice / {_SLICES_A_DAY}, start_slice * {SLICE_NS}, {rolled}
        FROM runs_slices_traces
        WHERE {in_slices}
            AND start_slice NOT IN (SELECT start_slice FROM rolled_slices WHERE stale IS NOT NULL)
            AND start_slice / {_SLICES_A_DAY} NOT IN ({priced})
"""
    view = _replaced(view, runs_arm, slices_arm + runs_arm)
    counted = daily._COUNTED
    stale_slices = f"""
    UNION ALL
    SELECT start_slice * {SLICE_NS}, (start_slice + 1) * {SLICE_NS}
    FROM rolled_slices WHERE stale IS NOT NULL AND {in_slices}
        AND start_slice / {_SLICES_A_DAY} NOT IN ({priced})"""
    return _replaced(view, f"({counted})", f"({counted}{stale_slices})")


def _make_view(view: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        _revision("0016_daily_view_counted_apart").install(view)
    else:
        op.execute("DROP VIEW runs_daily_v")
        op.execute(view)


def upgrade() -> None:
    rollups, daily = _revision("0010_rollups"), _DAILY
    rollups._rollup("runs_slices", "start_slice")
    for name, type_ in daily._COLUMNS:
        op.add_column("runs_slices", sa.Column(name, type_))
    daily._by_trace("runs_slices_traces", "start_slice")
    rollups._rolled("rolled_slices", "start_slice")
    op.add_column("rolled_slices", sa.Column("tags", sa.Integer()))
    op.create_table(
        "runs_slices_tags",
        sa.Column("start_slice", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("start_slice", "tag", name="pk_runs_slices_tags"),
    )
    scale = _revision("0008_scale_indexes")
    for table in _TABLES:
        scale.grant_to_readers(table)
    _make_view(_view(op.get_bind().dialect.name))


def downgrade() -> None:
    _make_view(_DAILY._view(op.get_bind().dialect.name))
    for table in _TABLES:
        op.drop_table(table)

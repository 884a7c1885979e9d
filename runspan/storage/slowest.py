"""The slowest runs of each UTC day and run type, in ``slowest_runs``: what "slowest first"
reads.

An index of every run's duration takes each new run in the middle of a b-tree of millions, which
made the writer's cost per span grow half as much again by ten million runs. The writer instead
keeps, per day and run type, the runs at least as slow as the group's ``PER_DAY``-th slowest
(ties kept): once a group has its hundred, a run enters only if it is slower than all but 99 of
them, so after the first minutes of a day the table hardly changes. Every run slower than its
group's floor (the least it holds) is in it; :meth:`RunStore.runs` relies on that to answer
"slowest first" from it, scanning only the groups whose floor a result does not clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from runspan.storage.schema import DAY_NS

if TYPE_CHECKING:  # the read side imports PER_DAY, and none of the writer's modules
    from runspan.storage.memo import WriterMemo
    from runspan.storage.rows import RowValues

#: Runs kept a day and run type.
PER_DAY = 100

_GROUP = "start_day = :day AND run_type = :run_type"
_FLOOR = text(
    f"SELECT duration_ms FROM slowest_runs WHERE {_GROUP}"
    f" ORDER BY duration_ms DESC LIMIT 1 OFFSET {PER_DAY - 1}"
)
_ADD = text(
    "INSERT INTO slowest_runs (trace_id, span_id, start_day, run_type, start_ns, duration_ms)"
    " VALUES (:trace_id, :span_id, :day, :run_type, :start_ns, :duration_ms)"
    " ON CONFLICT (trace_id, span_id) DO UPDATE SET duration_ms = excluded.duration_ms"
)
_TRIM = text(f"DELETE FROM slowest_runs WHERE {_GROUP} AND duration_ms < :floor")


def _group(row: RowValues) -> tuple[int, str]:
    return row["start_ns"] // DAY_NS, row["run_type"] or ""


def note_slowest(
    connection: Connection, rows: Sequence[RowValues], memo: WriterMemo | None = None
) -> None:
    """Add the finished runs among ``rows`` that are among the slowest of their day and type, in
    the caller's transaction, and let go of those no longer among them. Writes only for the
    slowest; reads a group's floor only when a run is above the one ``memo`` remembers."""
    finished = sorted(
        (row for row in rows if row["duration_ms"] is not None and row["status"] != "running"),
        key=_group,
    )
    for key, of_group in groupby(finished, key=_group):
        runs = list(of_group)
        known = memo.floors.get(key) if memo is not None else None
        if known is not None and all(row["duration_ms"] <= known for row in runs):
            continue  # none can enter: no statement at all
        group = {"day": key[0], "run_type": key[1]}
        floor = connection.execute(_FLOOR, group).scalar()
        chosen = [row for row in runs if floor is None or row["duration_ms"] > floor]
        if not chosen:
            if memo is not None and floor is not None:
                memo.stage_floor(key, floor)
            continue
        connection.execute(
            _ADD,
            [
                {
                    "trace_id": row["trace_id"],
                    "span_id": row["span_id"],
                    **group,
                    "start_ns": row["start_ns"],
                    "duration_ms": row["duration_ms"],
                }
                for row in chosen
            ],
        )
        floor = connection.execute(_FLOOR, group).scalar()
        if floor is not None:
            connection.execute(_TRIM, {**group, "floor": floor})
            if memo is not None:
                memo.stage_floor(key, floor)

"""PostgreSQL's ``runs`` in one partition a UTC day, so that retention drops days whole.

Revision 0009 makes ``runs`` a table partitioned by range of ``start_ns``: ``runs_YYYYMMDD``
holds the runs that started that day, and ``runs_default`` anything outside the days made (a
clock far off, a span from years ago), so that no write ever fails for want of a partition.
The writer makes the days ahead before they come (:func:`ensure_days`), and retention
(``runspan prune``, ``retention_days``) drops the days that are over (:func:`drop_days_before`)
instead of deleting their rows one by one. SQLite has no partitions: there retention deletes in
chunks.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from runspan.storage.schema import DAY_NS

#: Days made ahead of today, and behind it (a span that started before midnight and ends after).
DAYS_AHEAD = 3
DAYS_BEHIND = 1
_EPOCH = dt.date(1970, 1, 1)
_NAME = re.compile(r"^runs_(\d{8})$")


def partition_name(day: int) -> str:
    """``runs_YYYYMMDD`` for a UTC day given as days since the epoch."""
    return "runs_" + (_EPOCH + dt.timedelta(days=day)).strftime("%Y%m%d")


def day_of(name: str) -> int | None:
    """The day a partition's name is for; ``None`` for any other table."""
    found = _NAME.match(name)
    if found is None:
        return None
    return (dt.datetime.strptime(found[1], "%Y%m%d").date() - _EPOCH).days


def is_partitioned(connection: Connection) -> bool:
    """Whether this database's ``runs`` is partitioned (PostgreSQL from revision 0009)."""
    if connection.dialect.name != "postgresql":
        return False
    found = connection.execute(
        text(
            "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
            " WHERE c.relname = 'runs' AND c.relnamespace = current_schema()::regnamespace"
        )
    ).scalar_one()
    return bool(found)


def existing_days(connection: Connection) -> list[int]:
    """The days that have a partition, oldest first."""
    names = connection.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE p.relname = 'runs' AND p.relnamespace = current_schema()::regnamespace"
        )
    ).scalars()
    return sorted(day for day in map(day_of, names) if day is not None)


def ensure_days(connection: Connection, days: range) -> list[int]:
    """Make the partitions of ``days`` that are missing; the days made.

    Each in a savepoint of its own: two writers making the same day at once, or a day whose
    runs already went to ``runs_default`` (PostgreSQL refuses a partition whose rows the
    default holds), leave the others to be made.
    """
    made = []
    have = set(existing_days(connection))
    for day in days:
        if day in have:
            continue
        savepoint = connection.begin_nested()
        try:
            connection.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF runs"
                    f" FOR VALUES FROM ({day * DAY_NS}) TO ({(day + 1) * DAY_NS})"
                )
            )
        except DBAPIError:
            savepoint.rollback()
            continue
        savepoint.commit()
        made.append(day)
    return made


def days_around(now_ns: int) -> range:
    """The days the writer keeps made: yesterday to a few days ahead."""
    today = now_ns // DAY_NS
    return range(today - DAYS_BEHIND, today + DAYS_AHEAD + 1)


def drop_days_before(connection: Connection, cutoff_ns: int, *, count: bool = True) -> int:
    """Drop every partition whose whole day started before ``cutoff_ns``; the runs they held
    (counted first when ``count``, else 0)."""
    first_kept = cutoff_ns // DAY_NS  # the day the cutoff falls in stays, partly pruned later
    removed = 0
    for day in existing_days(connection):
        if day >= first_kept:
            break
        name = partition_name(day)
        if count:
            removed += int(connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
        connection.execute(text(f"DROP TABLE {name}"))
    return removed

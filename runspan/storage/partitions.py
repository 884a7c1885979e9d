"""PostgreSQL: ``runs`` partitioned by UTC day (revision 0018), one partition a day, named
``runs_pYYYYMMDD``.

The writer makes today's and the next days' partitions ahead, between batches, and a day's on
first use within the batch that needs it (a late span, a clock ahead): a row never meets a
missing partition. A partition is made empty and then attached, which locks ``runs`` against
other schema changes only, never against reads and writes (``CREATE TABLE ... PARTITION OF``
would lock out both). Retention detaches and drops the days it removes whole.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from runspan.storage.schema import DAY_NS

#: Days made ahead of today, so that a writer crossing midnight finds its day there.
AHEAD_DAYS = 2
# Writers in several processes make partitions one at a time (one lock for every day: two
# writers each holding a day's lock and waiting for the other's attach would deadlock).
_LOCK_KEY = 0x72756E7370617274  # "runspart"
# How long retention in the writer waits for reads that began before a detach; past it the
# partition stays half detached (no longer read) and the next visit finishes it.
DETACH_WAIT_SECONDS = 5.0
_EPOCH = datetime.date(1970, 1, 1)
_BOUNDS = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")

# Read from pg_class, not through to_regclass: a lookup by name can answer from the session's
# cache of the catalog, which a wait for an advisory lock does not refresh.
_EXISTING = text(
    "SELECT relname FROM pg_class WHERE relname = ANY(CAST(:names AS text[]))"
    " AND relnamespace = CAST(current_schema() AS regnamespace)"
)


def partition_name(day: int) -> str:
    """The partition of UTC day ``day`` (days since the epoch)."""
    return "runs_p" + (_EPOCH + datetime.timedelta(days=day)).strftime("%Y%m%d")


def make_days(connection: Connection, days: Iterable[int]) -> None:
    """Make the partitions of ``days`` that do not exist yet, in the caller's transaction."""
    wanted = {partition_name(day): day for day in set(days)}
    if not wanted:
        return
    missing = set(wanted) - set(connection.execute(_EXISTING, {"names": list(wanted)}).scalars())
    if not missing:
        return
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    # Another writer may have made them while this one waited for the lock.
    missing -= set(connection.execute(_EXISTING, {"names": sorted(missing)}).scalars())
    for name in sorted(missing):
        day = wanted[name]
        connection.execute(
            text(f"CREATE TABLE {name} (LIKE runs INCLUDING DEFAULTS INCLUDING GENERATED)")
        )
        # A trace holds about ten runs, whatever the statistics say (revision 0013).
        connection.execute(
            text(f"ALTER TABLE {name} ALTER COLUMN trace_id SET (n_distinct = -0.1)")
        )
        connection.execute(
            text(
                f"ALTER TABLE runs ATTACH PARTITION {name}"
                f" FOR VALUES FROM ({day * DAY_NS}) TO ({(day + 1) * DAY_NS})"
            )
        )


def make_ahead(engine: Engine, now_ns: int) -> None:
    """Make today's partition and the next ``AHEAD_DAYS`` days', in a transaction of its own."""
    today = now_ns // DAY_NS
    with engine.begin() as connection:
        make_days(connection, range(today, today + AHEAD_DAYS + 1))


@dataclass(frozen=True)
class Partition:
    name: str
    start_ns: int
    end_ns: int
    detaching: bool  # a detach began and did not finish


def partitions(connection: Connection) -> list[Partition]:
    """The partitions of ``runs``, oldest first."""
    found = []
    for name, bound, detaching in connection.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending"
            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass('runs')"
        )
    ):
        bounds = _BOUNDS.search(bound or "")
        if bounds:  # a DEFAULT partition someone added holds no range of its own
            found.append(Partition(name, int(bounds[1]), int(bounds[2]), bool(detaching)))
    return sorted(found, key=lambda partition: partition.start_ns)


def drop_before(engine: Engine, cutoff_ns: int, wait_seconds: float | None = None) -> int:
    """Detach and drop the partitions that end by ``cutoff_ns``; the number of runs they held.
    With ``wait_seconds``, a detach waits that long at most for the reads that began before it;
    a partition not detached in time is left (the rows retention deletes one by one meanwhile)
    for the next call."""
    dropped = 0
    with engine.connect() as listing:
        old = [found for found in partitions(listing) if found.end_ns <= cutoff_ns]
    if not old:
        return 0
    # DETACH ... CONCURRENTLY runs outside a transaction: it never blocks reads or writes.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        quote = connection.dialect.identifier_preparer.quote
        for partition in old:
            name = quote(partition.name)
            held = connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
            how = "FINALIZE" if partition.detaching else "CONCURRENTLY"
            try:
                if wait_seconds is not None:
                    connection.execute(text(f"SET statement_timeout = {int(wait_seconds * 1000)}"))
                connection.execute(text(f"ALTER TABLE runs DETACH PARTITION {name} {how}"))
            except Exception:
                if wait_seconds is None:
                    raise
                break  # if half detached, no longer read; the next call finishes it
            finally:
                if wait_seconds is not None:
                    connection.execute(text("RESET statement_timeout"))
            connection.execute(text(f"DROP TABLE {name}"))
            dropped += held
    return dropped

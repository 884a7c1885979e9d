"""The newest runs of a filter the rollups can narrow (a run type, a status, an unfinished
reason, a LangGraph node, a model, a tag), read only where a match can be: a day, hour or
ten-minute slice that the rollups hold as it is, and in which no group matches the filter or no
run carries the tag, is skipped. The rest of the filter (text, metadata, durations) is applied
to what is read.

Newest first through the index of start times, a filter few runs match reads the history back
until it has enough, and all of it when nothing matches: 6 to 8 s at ten million runs. The
rollups say in milliseconds which periods hold a match. What they do not hold as it is (the
open slice, stale periods) is read whole, so the answer is what reading every run gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select

from runspan.storage.records import RunFilter, runs_v
from runspan.storage.rollup_stats import Fetch, group_conditions
from runspan.storage.rollups import DAY, HOUR, SLICE, Period
from runspan.storage.schema import runs

_v = runs_v.c
# Filters the rollups narrow to a few periods; without one of them, most hours match and the
# newest runs are found at once through the index of start times.
_NARROWING = ("run_type", "status", "unfinished_reason", "node", "model", "tag")
# Filters with an index of their own, which finds their runs at once.
_INDEXED = ("trace_id", "session", "user")


def newest_runs(fetch: Fetch, where: RunFilter, limit: int) -> list[Any] | None:
    """Rows of ``runs_v`` matching ``where``, newest first, at most ``limit``; ``None`` when
    the rollups cannot narrow ``where`` (read newest first then)."""
    if any(getattr(where, name) is not None for name in _INDEXED):
        return None
    if all(getattr(where, name) is None for name in _NARROWING):
        return None
    if where.status == "running":  # their partial index finds them at once
        return None
    # Two queries: SQLite reads a lone min() or max() off the index, both together off the table.
    oldest = fetch(select(func.min(runs.c.start_ns).label("ns")))[0]["ns"]
    if oldest is None:
        return []
    newest = fetch(select(func.max(runs.c.start_ns).label("ns")))[0]["ns"]
    first = max(oldest, where.since or 0)
    last = newest if where.until is None else min(newest, where.until - 1)
    found: list[Any] = []
    for low, high in _joined(stretches(fetch, where, first, last)):
        found += fetch(
            select(runs_v)
            .where(*where.conditions(), _v.start_ns.between(low, high))
            .order_by(_v.start_ns.desc())
            .limit(limit - len(found))
        )
        if len(found) >= limit:
            break
    return found


def _joined(found: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Stretches (newest first) that touch joined into one, read by one query, not an hour
    each (every hour of a long stretch can match: a common tag, tags not kept)."""
    joined: tuple[int, int] | None = None
    for low, high in found:
        if joined is not None and high + 1 == joined[0]:
            joined = (low, joined[1])
            continue
        if joined is not None:
            yield joined
        joined = (low, high)
    if joined is not None:
        yield joined


def stretches(fetch: Fetch, where: RunFilter, first: int, last: int) -> Iterator[tuple[int, int]]:
    """The stretches of ``[first, last]`` (both ends in) that can hold a match, newest first:
    what the rollups do not hold as it is, and each held hour (or ten-minute slice, where the
    hour is not held) with a matching group and tags, except in a held day with none."""
    days, hours = _held(fetch, DAY, first, last), _held(fetch, HOUR, first, last)
    matching_days = _matching(fetch, DAY, where, first // DAY.length_ns, last // DAY.length_ns)
    ruled_out = days - matching_days
    # The slices of the hours not held (the open hour, a stale one): a day of them at most.
    each = HOUR.length_ns // SLICE.length_ns
    slices = {n for n in _held(fetch, SLICE, first, last) if n // each not in hours}
    matching_slices = _matching(fetch, SLICE, where, min(slices), max(slices)) if slices else set()
    held = sorted([(HOUR, n) for n in hours] + [(SLICE, n) for n in slices], key=_start)
    matching_hours: dict[int, set[int]] = {}  # by day, fetched when the walk reaches it
    end = last  # what is left to walk: [first, end]
    for period, number in reversed(held):
        start = _start((period, number))
        if end >= start + period.length_ns:  # not held, after this one
            yield from _by_day(max(start + period.length_ns, first), end, ruled_out)
        end = start - 1
        day = start // DAY.length_ns
        if day in ruled_out:
            continue
        if period is SLICE:
            matching = matching_slices
        else:
            if day not in matching_hours:
                matching_hours[day] = _matching(fetch, HOUR, where, day * 24, day * 24 + 23)
            matching = matching_hours[day]
        if number in matching:
            yield max(start, first), min(start + period.length_ns - 1, last)
    if end >= first:
        yield from _by_day(first, end, ruled_out)


def _start(held: tuple[Period, int]) -> int:
    period, number = held
    return number * period.length_ns


def _by_day(low: int, high: int, ruled_out: set[int]) -> Iterator[tuple[int, int]]:
    """``[low, high]`` newest first, without the days ``ruled_out``, days in a row as one."""
    top = None  # the newest end of the stretch being gathered
    for day in range(high // DAY.length_ns, low // DAY.length_ns - 1, -1):
        day_start = day * DAY.length_ns
        if day in ruled_out:
            if top is not None:
                yield day_start + DAY.length_ns, top
                top = None
        elif top is None:
            top = min(high, day_start + DAY.length_ns - 1)
    if top is not None:
        yield low, top


def _held(fetch: Fetch, period: Period, first: int, last: int) -> set[int]:
    """The periods within ``[first, last]`` whose rollups hold every run as it is."""
    rolled = period.rolled
    number = rolled.c[period.column]
    query = select(number.label("number")).where(
        rolled.c.runs.is_not(None),
        rolled.c.stale.is_(None),
        number.between(first // period.length_ns, last // period.length_ns),
    )
    return {row["number"] for row in fetch(query)}


def _matching(fetch: Fetch, period: Period, where: RunFilter, low: int, high: int) -> set[int]:
    """The periods numbered ``low`` to ``high`` with a group that matches ``where``, and whose
    runs carry its tags (or whose tags were not kept)."""
    d = period.table.c
    number = d[period.column]
    query = (
        select(number.label("number"))
        .where(number.between(low, high), *group_conditions(where, d))
        .distinct()
    )
    found = {row["number"] for row in fetch(query)}
    wanted = set(where.tags())
    if not wanted or not found:
        return found
    return found & _tagged(fetch, period, wanted, low, high)


def _tagged(fetch: Fetch, period: Period, wanted: set[str], low: int, high: int) -> set[int]:
    """The periods numbered ``low`` to ``high`` whose runs carry every tag ``wanted``, or whose
    tags were not kept (too many, or rolled up before they were)."""
    rolled, kept = period.rolled.c, period.tags.c
    unknown = select(rolled[period.column].label("number")).where(
        rolled[period.column].between(low, high), rolled.tags.is_(None) | (rolled.tags < 0)
    )
    found = {row["number"] for row in fetch(unknown)}
    carried: dict[int, set[str]] = {}
    query = select(kept[period.column].label("number"), kept.tag).where(
        kept[period.column].between(low, high), kept.tag.in_(sorted(wanted))
    )
    for row in fetch(query):
        carried.setdefault(row["number"], set()).add(row["tag"])
    return found | {number for number, tags in carried.items() if tags == wanted}

"""Rollups: the runs of each closed UTC day (``runs_daily``), hour (``runs_hourly``) and
ten-minute slice (``runs_slices``) counted per group, so that questions over weeks (``runspan
stats``) read a few rows a day instead of every run; the shorter periods serve the edges of a
period that starts or ends mid-day, and what the longer ones do not hold yet.

A period is rolled up whole, once it has been over for its ``closed_ns`` (four minutes for a
slice, ten for an hour, two hours for a day), by whichever writer gets to it first (between its
batches, for at most half a second a visit): a slice from its runs, an hour or a day summed from
its parts when they all hold it as it stands (else from its runs too). Every read counts from
``runs`` what no rollup holds, so a slice waits only four minutes: at hundreds of runs a second,
an hour is a million runs, and a day tens of millions, which their parts' rows sum in
milliseconds. A rollup is recomputed, never added to: a span written twice, or a running row
finished later, cannot be counted twice. A run written for a period over for its ``late_ns`` or
more (a run that ended long after it started, spans sent late to ``runspan serve``) marks its
period stale with a new token; reads count a stale period from ``runs``, and the writer rolls
it up again. The token is cleared only if no other write marked the period again meanwhile, so
a late run is never lost between the two. The time between ``late_ns`` and ``closed_ns`` covers
a batch's commit and clocks a little apart. A period summed from its parts is as exact: a run
written for it after its parts were rolled up marks its part stale (every part is late sooner
than the period it is in), or the period itself. A period marked stale again and again (long
runs ending one after another) is rolled up again at most every ``_REROLL_FACTOR`` times as long
as its last rollup took, and never within ``_REROLL_MIN_SECONDS``: reads stay exact meanwhile.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    Text,
    case,
    cast,
    delete,
    func,
    insert,
    select,
    text,
)

from runspan.storage.histogram import add, as_json, loads, plus
from runspan.storage.schema import (
    DAY_NS,
    rolled_days,
    rolled_hours,
    rolled_slices,
    runs,
    runs_daily,
    runs_daily_tags,
    runs_daily_traces,
    runs_hourly,
    runs_hourly_tags,
    runs_hourly_traces,
    runs_slices,
    runs_slices_tags,
    runs_slices_traces,
    traces,
)
from runspan.storage.sqlfuncs import duration_bucket

if TYPE_CHECKING:
    from runspan.storage.rows import RowValues

HOUR_NS = 3600 * 10**9
MINUTE_NS = 60 * 10**9
# A visit rolls periods up until it has spent this long (then comes back a second later).
_VISIT_SECONDS = 0.5
# A stale period rolled up again waits this many times as long as its last rollup took (a
# writer keeps most of its time for the app's spans), and at least this long.
_REROLL_FACTOR = 20
_REROLL_MIN_SECONDS = 60.0
#: A period's distinct tags are kept up to this many; beyond, a tag filter reads the period.
MAX_TAGS = 500
# PostgreSQL: writers in other processes roll up the same period one at a time.
_LOCK_CLASS = 0x72756E73  # "runs"

DIMENSIONS = (
    "service_name",
    "name",
    "run_type",
    "status",
    "unfinished_reason",
    "model_name",
    "langgraph_node",
    "error_type",
    "trace_name",
    "is_root",
)
_KEYS = len(DIMENSIONS) - 1  # the columns grouped by as they are (is_root is computed)


@dataclass(frozen=True)
class Period:
    """A length of time runs are rolled up by: its tables and the column numbering it."""

    length_ns: int
    table: Table  # the rollups
    by_trace: Table  # the same split by trace name, without histograms
    rolled: Table  # which are rolled up, and which stale
    tags: Table  # the distinct tags of a period's runs
    column: str  # periods since the epoch: start_day, start_hour, start_slice
    lock_class: int
    late_ns: int  # a run written this long after the period ended marks it stale
    closed_ns: int  # the period is rolled up this long after it ended
    parts: Period | None = None  # the shorter periods it is summed from, when they hold it
    # How long its rollups are kept, if not as long as its runs: only the periods of the last
    # kept_ns are rolled up, and older ones are dropped as the longer period is rolled up.
    kept_ns: int | None = None

    def of(self, start_ns: int) -> int:
        return start_ns // self.length_ns

    def first_open(self, now_ns: int) -> int:
        """The first period not yet closed: those before it can be rolled up."""
        return (now_ns - self.closed_ns) // self.length_ns

    def first_not_late(self, now_ns: int) -> int:
        """The first period a run written now is not late for: runs before it mark theirs."""
        return (now_ns - self.late_ns) // self.length_ns

    def mark(self, connection: Connection, numbers: Iterable[int]) -> None:
        """Mark ``numbers`` stale, in the caller's transaction, with a new token (a rollup
        that read an older one leaves this mark)."""
        chosen = sorted(set(numbers))
        if chosen:
            token = uuid.uuid4().hex
            connection.execute(
                text(
                    f"INSERT INTO {self.rolled.name} ({self.column}, stale) VALUES (:n, :stale)"
                    f" ON CONFLICT ({self.column}) DO UPDATE SET stale = excluded.stale"
                ),
                [{"n": number, "stale": token} for number in chosen],
            )


# A slice is the stretch every read counts from runs at most, plus its four minutes: a few
# minutes of runs. Two minutes late covers a batch's commit and clocks a little apart.
SLICE = Period(
    10 * MINUTE_NS,
    runs_slices,
    runs_slices_traces,
    rolled_slices,
    runs_slices_tags,
    "start_slice",
    _LOCK_CLASS + 2,
    late_ns=2 * MINUTE_NS,
    closed_ns=4 * MINUTE_NS,
    # A day of slices: the hours hold the rest (kept as long as the runs, the slices would be
    # up to six times the hours' rows).
    kept_ns=DAY_NS,
)
# The longer a period, the longer it waits: the shorter ones serve it meanwhile, and a long run
# that makes it stale costs its rollup again.
HOUR = Period(
    HOUR_NS,
    runs_hourly,
    runs_hourly_traces,
    rolled_hours,
    runs_hourly_tags,
    "start_hour",
    _LOCK_CLASS + 1,
    late_ns=5 * MINUTE_NS,
    closed_ns=10 * MINUTE_NS,
    parts=SLICE,
)
DAY = Period(
    DAY_NS,
    runs_daily,
    runs_daily_traces,
    rolled_days,
    runs_daily_tags,
    "start_day",
    _LOCK_CLASS,
    late_ns=HOUR_NS,
    closed_ns=2 * HOUR_NS,
    parts=HOUR,
)
# Shortest first: a period is summed from its parts when they are all rolled up.
PERIODS = (SLICE, HOUR, DAY)


def mark_late(connection: Connection, rows: Sequence[RowValues], now_ns: int) -> None:
    """Mark stale, in the caller's transaction, the periods of ``rows`` over for their
    ``late_ns``."""
    late_before = max(p.first_not_late(now_ns) * p.length_ns for p in PERIODS)
    late = [row["start_ns"] for row in rows if row["start_ns"] < late_before]
    if late:
        for period in PERIODS:
            ended = period.first_not_late(now_ns)
            period.mark(connection, [n for n in map(period.of, late) if n < ended])


def mark_stale(connection: Connection, starts_ns: Iterable[int], kept_from_ns: int = 0) -> None:
    """Mark stale the periods of runs that started at ``starts_ns`` (their runs changed), but
    none that ended before ``kept_from_ns`` (retention forgets those)."""
    starts = list(starts_ns)
    for period in PERIODS:
        first = period.of(kept_from_ns)
        period.mark(connection, [n for n in map(period.of, starts) if n >= first])


def forget_before(connection: Connection, cutoff_ns: int) -> None:
    """The periods that ended by ``cutoff_ns`` lost every run (retention): their rollups go."""
    for period in PERIODS:
        first_kept = cutoff_ns // period.length_ns
        for rollup in (period.table, period.by_trace, period.tags):
            connection.execute(delete(rollup).where(rollup.c[period.column] < first_kept))
        connection.execute(delete(period.rolled).where(period.rolled.c[period.column] < first_kept))


def cost_sums(c: Any) -> list[Any]:
    """The sums of ``_SUMS``, over runs' columns ``c``, that a group's cost is computed from,
    split as runs_v prices a run: only one that reported tokens has a cost."""
    costed = c.input_tokens.is_not(None) | c.output_tokens.is_not(None)
    read = func.coalesce(c.cache_read_tokens, 0)
    written = func.coalesce(c.cache_creation_tokens, 0)
    uncached = func.coalesce(c.input_tokens, 0) - read - written
    values = (1, uncached, read, written, func.coalesce(c.output_tokens, 0))
    return [
        func.sum(case((costed, value), else_=0)).label(name)
        for name, value in zip(_SUMS, values, strict=True)
    ]


def _counted(connection: Connection, period: Period, number: int) -> Any:
    """The runs of period ``number``, counted by the database per group and duration bucket."""
    is_root = case((runs.c.run_id.is_not(None) & runs.c.parent_run_id.is_(None), 1), else_=0)
    slot = duration_bucket(runs.c.duration_ms)
    # The trace's name is its root's: what chain, graph or agent the run served.
    dimensions = [getattr(runs.c, name) for name in DIMENSIONS[:-2]]
    dimensions.append(traces.c.name.label("trace_name"))
    start = number * period.length_ns
    return connection.execute(
        select(
            *dimensions,
            is_root,
            slot,
            func.count(),
            func.sum(runs.c.duration_ms),
            func.min(runs.c.duration_ms),
            func.max(runs.c.duration_ms),
            func.sum(runs.c.input_tokens),
            func.sum(runs.c.output_tokens),
            func.sum(runs.c.total_tokens),
            *cost_sums(runs.c),
            func.max(runs.c.start_ns),
            func.min(runs.c.error_message),
            func.max(runs.c.attempt),
            func.count(runs.c.ttft_ms),
            func.sum(runs.c.ttft_ms),
            func.max(runs.c.ttft_ms),
        )
        .select_from(runs.outerjoin(traces, traces.c.trace_id == runs.c.trace_id))
        .where(runs.c.start_ns >= start, runs.c.start_ns < start + period.length_ns)
        .group_by(*dimensions, is_root, slot)
    )


_SUMS = (
    "cost_runs",
    "cost_uncached_input_tokens",
    "cost_cache_read_tokens",
    "cost_cache_creation_tokens",
    "cost_output_tokens",
)


_TRACE_NAME = DIMENSIONS.index("trace_name")
_UNNAMED = tuple(name for name in DIMENSIONS if name != "trace_name")  # runs_daily's groups


def summarize(
    column: str, number: int, counted: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rollup rows, of period ``number`` in ``column``, from runs counted per group, trace name
    and bucket (the rows of :func:`_counted`): per group with their histograms, and per group
    and trace name without."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    named: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in counted:
        key = (*row[:_KEYS], bool(row[_KEYS]))
        unnamed = key[:_TRACE_NAME] + key[_TRACE_NAME + 1 :]
        for kept, wanted, dimensions in (
            (groups, unnamed, _UNNAMED),
            (named, key, DIMENSIONS),
        ):
            group = kept.get(wanted)
            if group is None:
                group = kept[wanted] = _new_group(column, number, dimensions, wanted)
            _fold(group, row[_KEYS + 1 :])
    for group in groups.values():
        finished = group["finished"]
        group["durations"] = json.dumps(as_json(group["durations"])) if finished else None
    for group in named.values():
        del group["durations"]
    return list(groups.values()), list(named.values())


def _new_group(
    column: str, number: int, dimensions: tuple[str, ...], key: tuple[Any, ...]
) -> dict[str, Any]:
    return {
        column: number,
        **dict(zip(dimensions, key, strict=True)),
        "runs": 0,
        "finished": 0,
        "duration_ms_sum": None,
        "duration_ms_min": None,
        "duration_ms_max": None,
        "durations": {},
        "input_tokens": None,
        "output_tokens": None,
        "total_tokens": None,
        **dict.fromkeys(_SUMS, 0),
        "last_start_ns": None,
        "error_example": None,
        "attempt_max": None,
        "ttft_count": 0,
        "ttft_ms_sum": None,
        "ttft_ms_max": None,
    }


def _fold(group: dict[str, Any], counted: Any) -> None:
    """Add one row of :func:`_counted` (after its group's columns) into ``group``."""
    slot, count, duration_sum, least, most, tokens_in, tokens_out, tokens = counted[:8]
    costs = counted[8:13]
    last, example, attempt, ttft_count, ttft_sum, ttft_max = counted[13:]
    group["runs"] += count
    if slot is not None:  # finished runs: a running one has no duration
        group["finished"] += count
        group["duration_ms_sum"] = (group["duration_ms_sum"] or 0.0) + duration_sum
        group["duration_ms_min"] = _least(group["duration_ms_min"], least)
        group["duration_ms_max"] = _greatest(group["duration_ms_max"], most)
        durations = group["durations"]
        durations[int(slot)] = durations.get(int(slot), 0) + count
    group["input_tokens"] = plus(group["input_tokens"], tokens_in)
    group["output_tokens"] = plus(group["output_tokens"], tokens_out)
    group["total_tokens"] = plus(group["total_tokens"], tokens)
    for name, value in zip(_SUMS, costs, strict=True):
        group[name] += int(value or 0)
    group["last_start_ns"] = _greatest(group["last_start_ns"], last)
    group["error_example"] = _least(group["error_example"], example)
    group["attempt_max"] = _greatest(group["attempt_max"], attempt)
    if ttft_count:
        group["ttft_count"] += ttft_count
        group["ttft_ms_sum"] = (group["ttft_ms_sum"] or 0.0) + ttft_sum
        group["ttft_ms_max"] = _greatest(group["ttft_ms_max"], ttft_max)


def _least(kept: Any, value: Any) -> Any:
    """SQL's ``min()`` of two: an unknown (``None``) is left out."""
    return value if kept is None else kept if value is None else min(kept, value)


def _greatest(kept: Any, value: Any) -> Any:
    return value if kept is None else kept if value is None else max(kept, value)


# A period's distinct tags, exactly those json_array_contains can find: the strings of a
# top-level array.
_TAGS = {
    "sqlite": "SELECT DISTINCT j.value FROM runs, json_each(runs.tags) AS j"
    " WHERE runs.start_ns >= :low AND runs.start_ns < :high AND runs.tags IS NOT NULL"
    " AND j.type = 'text' LIMIT :limit",
    "postgresql": "SELECT DISTINCT e.value #>> '{}' FROM runs, jsonb_array_elements("
    "CASE WHEN jsonb_typeof(runs.tags) = 'array' THEN runs.tags END) AS e(value)"
    " WHERE runs.start_ns >= :low AND runs.start_ns < :high"
    " AND jsonb_typeof(e.value) = 'string' LIMIT :limit",
}


def _tags(connection: Connection, period: Period, number: int) -> list[str]:
    """The distinct tags of period ``number``'s runs, at most ``MAX_TAGS`` + 1."""
    low = number * period.length_ns
    found = connection.execute(
        text(_TAGS[connection.dialect.name]),
        {"low": low, "high": low + period.length_ns, "limit": MAX_TAGS + 1},
    )
    return sorted(found.scalars())


# How a period's groups are summed from its parts' (SQL's own min and max: the database's
# collation).
_COMBINED = {
    **dict.fromkeys(
        ("runs", "finished", "input_tokens", "output_tokens", "total_tokens", *_SUMS), "sum"
    ),
    "ttft_count": "sum",
    "duration_ms_sum": "sum",
    "ttft_ms_sum": "sum",
    "duration_ms_min": "min",
    "error_example": "min",
    "duration_ms_max": "max",
    "last_start_ns": "max",
    "attempt_max": "max",
    "ttft_ms_max": "max",
}


def _part_numbers(period: Period, number: int) -> range:
    """The numbers of period ``number``'s parts."""
    assert period.parts is not None
    each = period.length_ns // period.parts.length_ns
    return range(number * each, (number + 1) * each)


def _within(column: Any, numbers: range) -> Any:
    return (column >= numbers.start) & (column < numbers.stop)


def _parts_hold(connection: Connection, parts: Period, numbers: range) -> bool:
    """Whether every one of ``numbers`` (periods ``parts``) that has runs is rolled up as it
    stands, with its tags."""
    rolled = parts.rolled.c
    held = set(
        connection.execute(
            select(rolled[parts.column]).where(
                _within(rolled[parts.column], numbers),
                rolled.runs.is_not(None),
                rolled.stale.is_(None),
                rolled.tags.is_not(None),
            )
        ).scalars()
    )
    for number in numbers:
        if number not in held:  # never rolled up: it must have no runs
            low = number * parts.length_ns
            found = connection.execute(
                select(runs.c.start_ns)
                .where(runs.c.start_ns >= low, runs.c.start_ns < low + parts.length_ns)
                .limit(1)
            ).first()
            if found is not None:
                return False
    return True


def _summed(
    connection: Connection, table: Table, column: str, numbers: range, dimensions: Sequence[str]
) -> list[Any]:
    """``table``'s rows of periods ``numbers`` (in ``column``) summed per group of
    ``dimensions``."""
    grouped = [table.c[name] for name in dimensions]
    combined = []
    for name, how in _COMBINED.items():
        value = getattr(func, how)(table.c[name])
        # PostgreSQL sums integers as numeric.
        combined.append((cast(value, table.c[name].type) if how == "sum" else value).label(name))
    return list(
        connection.execute(
            select(*grouped, *combined).where(_within(table.c[column], numbers)).group_by(*grouped)
        ).mappings()
    )


def _from_parts(
    connection: Connection, period: Period, number: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str] | None] | None:
    """Period ``number``'s rollup rows and tags (``None``: over ``MAX_TAGS``) summed from its
    parts, or ``None`` if some part with runs is not rolled up as it stands. A busy day is tens
    of millions of runs, a busy hour a million; their parts are a few thousand rows."""
    parts = period.parts
    if parts is None:
        return None
    numbers = _part_numbers(period, number)
    if not _parts_hold(connection, parts, numbers):
        return None
    table, column = parts.table.c, parts.column
    histograms: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in connection.execute(
        select(*(table[name] for name in _UNNAMED), cast(table.durations, Text)).where(
            _within(table[column], numbers), table.durations.is_not(None)
        )
    ):
        add(histograms.setdefault(tuple(row[:-1]), {}), loads(row[-1]))
    groups = []
    for row in _summed(connection, parts.table, column, numbers, _UNNAMED):
        group = {period.column: number, **row}
        counts = histograms.get(tuple(row[name] for name in _UNNAMED))
        group["durations"] = (
            json.dumps(as_json({int(key): count for key, count in counts.items()}))
            if group["finished"] and counts
            else None
        )
        groups.append(group)
    by_trace = _summed(connection, parts.by_trace, column, numbers, DIMENSIONS)
    named = [{period.column: number, **row} for row in by_trace]
    # A part with too many tags to keep (-1) leaves the period's unknown too.
    kept = connection.execute(
        select(parts.rolled.c.tags).where(_within(parts.rolled.c[column], numbers))
    ).scalars()
    tags: list[str] | None = None
    if all(count is not None and count >= 0 for count in kept):
        tag = parts.tags.c
        tags = sorted(
            connection.execute(
                select(tag.tag).distinct().where(_within(tag[column], numbers))
            ).scalars()
        )
        if len(tags) > MAX_TAGS:
            tags = None
    return groups, named, tags


def roll_up(engine: Engine, period: Period, number: int, now_ns: int) -> bool:
    """Roll period ``number`` up (summed from its parts when they hold it, else from ``runs``),
    in a transaction of its own; ``False`` if another writer is rolling it up right now."""
    table, rolled, column = period.table, period.rolled, period.column
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            locked = connection.execute(
                text("SELECT pg_try_advisory_xact_lock(:lock_class, :number)"),
                {"lock_class": period.lock_class, "number": number},
            ).scalar()
            if not locked:
                return False
        # A write first: on SQLite it takes the write lock, so what is read next stays as read.
        for rollup in (table, period.by_trace, period.tags):
            connection.execute(delete(rollup).where(rollup.c[column] == number))
        stale = connection.execute(
            select(rolled.c.stale).where(rolled.c[column] == number)
        ).scalar()
        summed = _from_parts(connection, period, number)
        if summed is not None:
            groups, named, tags = summed
        else:
            groups, named = summarize(column, number, _counted(connection, period, number))
            found = _tags(connection, period, number)
            tags = found if len(found) <= MAX_TAGS else None
        if groups:
            connection.execute(insert(table), groups)
            connection.execute(insert(period.by_trace), named)
        if tags:
            connection.execute(insert(period.tags), [{column: number, "tag": tag} for tag in tags])
        connection.execute(
            text(
                f"INSERT INTO {rolled.name} ({column}, runs, rolled_ns, tags) VALUES"
                f" (:number, :runs, :rolled_ns, :tags) ON CONFLICT ({column}) DO UPDATE SET"
                " runs = excluded.runs, rolled_ns = excluded.rolled_ns, tags = excluded.tags"
            ),
            {
                "number": number,
                "runs": sum(group["runs"] for group in groups),
                "rolled_ns": now_ns,
                "tags": -1 if tags is None else len(tags),
            },
        )
        if stale is not None:
            connection.execute(
                text(f"UPDATE {rolled.name} SET stale = NULL WHERE {column} = :n AND stale = :s"),
                {"n": number, "s": stale},
            )
        _forget_old_parts(connection, period, number)
    return True


def _forget_old_parts(connection: Connection, period: Period, number: int) -> None:
    """Drop the parts of ``period`` kept no longer (older than their ``kept_ns`` before period
    ``number``): reads count from ``runs`` what no rollup holds, so what they held is still
    counted, and they are not rolled up again (:func:`_held_to`)."""
    parts = period.parts
    if parts is None or parts.kept_ns is None:
        return
    first_kept = parts.of(number * period.length_ns - parts.kept_ns)
    for rollup in (parts.table, parts.by_trace, parts.tags, parts.rolled):
        connection.execute(delete(rollup).where(rollup.c[parts.column] < first_kept))


def _first_kept(period: Period, now_ns: int) -> int:
    """The first of ``period`` kept now: a period before it is not rolled up, even if stale
    (its rows would be dropped as soon as made)."""
    return 0 if period.kept_ns is None else period.of(now_ns - period.kept_ns)


def _held_to(connection: Connection, period: Period, now_ns: int) -> int:
    """For a period kept a while only (slices), the first that is kept now and after the newest
    longer period rolled up: only those are rolled up unless marked stale (the slices of a
    history stored before revision 0017 would be its every run counted again, for rows no read
    uses). Hours are all rolled up: reads use them at the edges of days held."""
    if period.kept_ns is None:
        return 0
    first = _first_kept(period, now_ns)
    for whole in PERIODS:
        if whole.parts is period:
            newest = connection.execute(
                select(func.max(whole.rolled.c[whole.column])).where(
                    whole.rolled.c.runs.is_not(None)
                )
            ).scalar()
            if newest is not None:
                first = max(first, _part_numbers(whole, newest + 1).start)
    return first


class Rollups:
    """What a writer's visits roll up: stale periods and the closed periods never rolled up,
    oldest first, then those rolled up before their tags were kept. Remembers how far it has
    looked, so that a visit with nothing to do costs a few lookups."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._looked_to = dict.fromkeys(PERIODS, 0)  # before it: all rolled up
        # Whether every rolled period has its tags: a roll-up always keeps them, so once true
        # it stays true.
        self._all_tagged = dict.fromkeys(PERIODS, False)
        # The periods this writer rolled up lately, and until when they rest from it: only
        # those, so it stays small.
        self._resting: dict[tuple[str, int], float] = {}

    def visit(self, engine: Engine, now_ns: int) -> bool:
        """Roll up what is due for at most ``_VISIT_SECONDS``; ``False`` if some is left."""
        now = self._monotonic()
        deadline = now + _VISIT_SECONDS
        self._resting = {key: until for key, until in self._resting.items() if until > now}
        for period in PERIODS:
            for number in self.due(engine, period, now_ns):
                key = (period.column, number)
                if key in self._resting:
                    continue  # stale again right after its rollup: reads count it meanwhile
                started = self._monotonic()
                # One at least: every visit progresses.
                if roll_up(engine, period, number, now_ns):
                    ended = self._monotonic()
                    rest = max(_REROLL_MIN_SECONDS, _REROLL_FACTOR * (ended - started))
                    self._resting[key] = ended + rest
                if self._monotonic() > deadline:
                    return False
        return True

    def due(self, engine: Engine, period: Period, now_ns: int) -> list[int]:
        rolled, column = period.rolled, period.rolled.c[period.column]
        first_open = period.first_open(now_ns)
        with engine.connect() as connection:
            looked_to = max(self._looked_to[period], _held_to(connection, period, now_ns))
            stale = list(
                connection.execute(
                    select(column)
                    .where(
                        rolled.c.stale.is_not(None),
                        column < first_open,
                        column >= _first_kept(period, now_ns),
                    )
                    .order_by(column)
                    .limit(100)
                ).scalars()
            )
            if looked_to >= first_open:
                return stale or self._untagged(connection, period, first_open)
            done = set(
                connection.execute(
                    select(column).where(rolled.c.runs.is_not(None), column >= looked_to)
                ).scalars()
            )
            unrolled: list[int] = []
            number = looked_to
            while len(unrolled) < 100:
                # The next period with runs, found through the index of start times.
                first = connection.execute(
                    select(runs.c.start_ns)
                    .where(
                        runs.c.start_ns >= number * period.length_ns,
                        runs.c.start_ns < first_open * period.length_ns,
                    )
                    .order_by(runs.c.start_ns)
                    .limit(1)
                ).scalar()
                if first is None:
                    break
                number = period.of(first)
                if number not in done:
                    unrolled.append(number)
                number += 1
            # Every period before the first one found is rolled up (one that turns stale is
            # found by the first query): the next walk starts there, not over them again (on
            # PostgreSQL each step is a round trip, and catching up took minutes of them).
            self._looked_to[period] = unrolled[0] if unrolled else first_open
            due = sorted({*stale, *unrolled})
            return due or self._untagged(connection, period, first_open)

    def _untagged(self, connection: Connection, period: Period, first_open: int) -> list[int]:
        """Periods rolled up before revision 0014 kept tags: rolled up again, after the rest,
        so that a tag filter can rule them out (until then it reads them)."""
        if self._all_tagged[period]:
            return []
        rolled, column = period.rolled, period.rolled.c[period.column]
        found = list(
            connection.execute(
                select(column)
                .where(rolled.c.runs.is_not(None), rolled.c.tags.is_(None), column < first_open)
                .order_by(column)
                .limit(100)
            ).scalars()
        )
        self._all_tagged[period] = not found
        return found

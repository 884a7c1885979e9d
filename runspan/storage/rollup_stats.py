"""``runspan stats`` over weeks: the whole days, hours and ten-minute slices the rollups hold
(``runs_daily``, ``runs_hourly``, ``runs_slices``) read from them, the rest (the open slice, the
edges of the period, what is not rolled up yet or was made stale) counted from ``runs``, its
runs priced once per model.

Counts, errors, tokens and costs come out as counting every run would give them. Percentiles
come from the rollups' duration histograms, within half a percent of the exact figure
(runspan.storage.histogram). A day, hour or slice in which a price took effect is counted
from ``runs``: its runs are priced as they started, which its sums cannot tell apart.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import Float, Text, case, column, func, or_, select, text

from runspan.storage.histogram import add, loads, percentile, plus
from runspan.storage.records import GROUPS, RunFilter, Stat, day_text, model_matches, runs_v
from runspan.storage.rollups import PERIODS, Period, cost_sums
from runspan.storage.schema import DAY_NS, model_prices
from runspan.storage.sqlfuncs import duration_bucket

_v = runs_v.c
_EARLIEST, _LATEST = 0, 2**63 - 1
Fetch = Callable[[Any], list[Any]]
Span = tuple[int | None, int | None]  # [since, until) in ns; None: unbounded

# The price runs_v gives a model run (revision 0007's join, which a test holds this copy to;
# importing the revision would load Alembic into every read), here as of the start of a
# rollup row's period.
PRICE_JOIN = """
LEFT JOIN model_prices p ON p.id = (
    SELECT mp.id FROM model_prices mp
    WHERE lower(r.model_name) LIKE mp.model_pattern AND mp.valid_from_ns <= r.start_ns
    ORDER BY CASE mp.origin WHEN 'import' THEN 1 WHEN 'seed' THEN 2 ELSE 0 END,
        length(mp.model_pattern) DESC, mp.valid_from_ns DESC, mp.id
    LIMIT 1
)"""


@functools.cache
def _priced(period: Period) -> Any:
    """The rollups of ``period`` with each row's cost. The durations come as JSON text, which
    :func:`~runspan.storage.histogram.loads` reads (a month is a thousand histograms of a few
    hundred buckets each, and decoding them was the larger part of ``runspan stats``)."""
    table = period.table
    picked = ", ".join(
        "CAST(r.durations AS TEXT) AS durations" if c.name == "durations" else f"r.{c.name}"
        for c in table.c
    )
    return (
        text(
            f"""SELECT {picked}, CASE WHEN p.id IS NULL OR r.cost_runs = 0 THEN NULL ELSE (
        r.cost_uncached_input_tokens * p.input_usd_per_mtok
        + r.cost_cache_read_tokens * coalesce(p.cache_read_usd_per_mtok, p.input_usd_per_mtok)
        + r.cost_cache_creation_tokens
            * coalesce(p.cache_write_usd_per_mtok, p.input_usd_per_mtok)
        + r.cost_output_tokens * p.output_usd_per_mtok
    ) / 1000000.0 END AS cost_usd
FROM (SELECT d.*, d.{period.column} * {period.length_ns} AS start_ns FROM {table.name} d) r
{PRICE_JOIN}"""
        )
        .columns(
            *(column(c.name, Text() if c.name == "durations" else c.type) for c in table.c),
            column("cost_usd", Float()),
        )
        .subquery("priced")
    )


# What the rollups can filter on (the period by its days, hours and slices, the rest by their
# columns).
_SERVED_FILTERS = frozenset(
    {"since", "until", "name", "run_type", "status", "unfinished_reason", "node", "model"}
    | {"skip_types", "roots_only"}
)


def servable(where: RunFilter) -> bool:
    """Whether the rollups keep what ``where`` asks about: every other filter is unset (a
    filter added to RunFilter later is counted from runs until the rollups learn it)."""
    return all(
        getattr(where, option.name) == option.default
        for option in fields(where)
        if option.name not in _SERVED_FILTERS
    )


def served(fetch: Fetch, period: Period, since: int | None, until: int | None) -> list[int]:
    """The periods wholly inside ``[since, until)`` that the rollups hold as they are."""
    rolled = period.rolled
    number = rolled.c[period.column]
    query = select(number.label("number")).where(
        rolled.c.runs.is_not(None), rolled.c.stale.is_(None)
    )
    if since is not None:
        query = query.where(number >= -(-since // period.length_ns))
    if until is not None:
        query = query.where(number < until // period.length_ns)
    numbers = {row["number"] for row in fetch(query)}
    if numbers:
        for row in fetch(select(model_prices.c.valid_from_ns).distinct()):
            valid_from = row["valid_from_ns"]
            if valid_from % period.length_ns:  # a price that took effect during that period
                numbers.discard(valid_from // period.length_ns)
    return sorted(numbers)


def _spans(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive periods as (first, last) pairs."""
    spans: list[tuple[int, int]] = []
    for number in numbers:
        if spans and spans[-1][1] == number - 1:
            spans[-1] = (spans[-1][0], number)
        else:
            spans.append((number, number))
    return spans


def _rollup_conditions(
    where: RunFilter, priced: Any, period: Period, numbers: Sequence[int]
) -> list[Any]:
    number = priced.c[period.column]
    return [
        or_(*(number.between(first, last) for first, last in _spans(numbers))),
        *group_conditions(where, priced.c),
    ]


def group_conditions(where: RunFilter, d: Any) -> list[Any]:
    """``where`` over a rollup's groups (``d``, its columns), its period aside."""
    found: list[Any] = []
    for name, rolled_column in (
        ("name", d.name),
        ("run_type", d.run_type),
        ("status", d.status),
        ("unfinished_reason", d.unfinished_reason),
        ("node", d.langgraph_node),
    ):
        value = getattr(where, name)
        if value is not None:
            found.append(rolled_column == value)
    if where.model is not None:
        found.append(model_matches(d.model_name, where.model))
    if where.skip_types:
        found.append(d.run_type.is_(None) | d.run_type.not_in(where.skip_types))
    if where.roots_only:
        found.append(d.is_root.is_(True))
    return found


@dataclass
class _Group:
    runs: int = 0
    errors: int = 0
    durations: dict[str, int] = field(default_factory=dict)  # as histogram.add merges them
    least: float = math.inf
    greatest: float = -math.inf
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None

    def tokens(self, input_tokens: Any, output_tokens: Any, total_tokens: Any) -> None:
        self.input_tokens = plus(self.input_tokens, input_tokens)
        self.output_tokens = plus(self.output_tokens, output_tokens)
        self.total_tokens = plus(self.total_tokens, total_tokens)

    def cost(self, value: Any) -> None:
        if value is not None:
            self.cost_usd = (self.cost_usd or 0.0) + float(value)


def rolled_stats(
    fetch: Fetch, by: str, where: RunFilter, percentiles: Sequence[int]
) -> list[Stat] | None:
    """Stats grouped ``by`` name, model, day or node, reading the rollups for the periods
    they hold; ``None`` when they hold none of the period or cannot answer ``where``."""
    if by not in ("name", "model", "day", "node") or not servable(where):
        return None
    # Days where they hold the period, then hours in what is left, then slices; the rest, raw.
    held: list[tuple[Period, list[int]]] = []
    raw: list[Span] = [(where.since, where.until)]
    for period in reversed(PERIODS):
        numbers: list[int] = []
        left: list[Span] = []
        for since, until in raw:
            found = served(fetch, period, since, until)
            numbers.extend(found)
            left.extend(_gaps(period, found, since, until))
        held.append((period, numbers))
        raw = left
    if not any(numbers for _period, numbers in held):
        return None
    groups: dict[Any, _Group] = {}
    for period, numbers in held:
        if numbers:
            _add_rollups(fetch, by, where=where, period=period, numbers=numbers, groups=groups)
    # The rest, from runs: each stretch on its own (a range of start times the index serves),
    # cut where a price took effect, so that one price serves each model in each piece.
    key = _v.start_day if by == "day" else GROUPS[by]
    changes = sorted({row["valid_from_ns"] for row in fetch(select(model_prices.c.valid_from_ns))})
    for since, until in raw:
        low, high = _EARLIEST if since is None else since, _LATEST if until is None else until
        cuts = [low, *(at for at in changes if low < at < high), high]
        for first, end in itertools.pairwise(cuts):
            # Both bounds, always: with only one, SQLite's planner may read every run through
            # another index (by name, to group without sorting).
            conditions = [*where.conditions(), _v.start_ns.between(first, end - 1)]
            if by in ("model", "node"):
                conditions.append(key.is_not(None))
            _count_runs(fetch, key, conditions, groups, first)
    ordered = sorted(groups.items(), key=lambda item: (-item[1].runs, item[0]))
    return [_stat(key, group, by, percentiles) for key, group in ordered if group.runs]


def _add_rollups(
    fetch: Fetch,
    by: str,
    *,
    where: RunFilter,
    period: Period,
    numbers: Sequence[int],
    groups: dict[Any, _Group],
) -> None:
    priced = _priced(period)
    d = priced.c
    key = {"name": d.name, "model": d.model_name, "day": d[period.column]}.get(by, d.langgraph_node)
    conditions = _rollup_conditions(where, priced, period, numbers)
    if by in ("model", "node"):
        conditions.append(key.is_not(None))
    for row in fetch(select(key.label("key"), priced).where(*conditions)):
        value = row["key"]
        if by == "day":
            value = value * period.length_ns // DAY_NS
        group = groups.setdefault(value, _Group())
        group.runs += row["runs"]
        if row["status"] == "error":
            group.errors += row["runs"]
        if row["durations"]:
            add(group.durations, loads(row["durations"]))
            group.least = min(group.least, row["duration_ms_min"])
            group.greatest = max(group.greatest, row["duration_ms_max"])
        group.tokens(row["input_tokens"], row["output_tokens"], row["total_tokens"])
        group.cost(row["cost_usd"])


def _gaps(
    period: Period, numbers: Sequence[int], since: int | None, until: int | None
) -> list[Span]:
    """The stretches of ``[since, until)`` outside the periods ``numbers``."""
    gaps: list[Span] = []
    start = since
    for first, last in _spans(numbers):
        if start is None or start < first * period.length_ns:
            gaps.append((start, first * period.length_ns))
        start = (last + 1) * period.length_ns
    if until is None or start is None or start < until:
        gaps.append((start, until))
    return gaps


# The price runs_v gives a model run starting at ``start_ns`` (PRICE_JOIN's lookup).
_PRICE = text(
    "SELECT p.id, p.input_usd_per_mtok, p.output_usd_per_mtok, p.cache_read_usd_per_mtok,"
    " p.cache_write_usd_per_mtok FROM (SELECT CAST(:model AS TEXT) AS model_name,"
    f" CAST(:start_ns AS BIGINT) AS start_ns) r {PRICE_JOIN}"
)


def _count_runs(
    fetch: Fetch, key: Any, conditions: list[Any], groups: dict[Any, _Group], start_ns: int
) -> None:
    """Add the runs that match ``conditions`` into ``groups``, by ``key``: one row a group,
    duration bucket and model, counted by the database. No price takes effect among them
    after ``start_ns``, so a model's runs are priced together at it, as runs_v prices each
    (one price lookup a model, not one a model run)."""
    slot = duration_bucket(_v.duration_ms)
    query = (
        select(
            key.label("key"),
            slot.label("bucket"),
            _v.model_name.label("model"),
            func.count().label("runs"),
            func.sum(case((_v.status == "error", 1), else_=0)).label("errors"),
            func.min(_v.duration_ms).label("least"),
            func.max(_v.duration_ms).label("greatest"),
            func.sum(_v.input_tokens).label("input_tokens"),
            func.sum(_v.output_tokens).label("output_tokens"),
            func.sum(_v.total_tokens).label("total_tokens"),
            *cost_sums(_v),
        )
        .where(*conditions)
        .group_by(key, slot, _v.model_name)
    )
    prices: dict[str, Any] = {}
    for row in fetch(query):
        group = groups.setdefault(row["key"], _Group())
        group.runs += row["runs"]
        group.errors += int(row["errors"] or 0)
        group.tokens(row["input_tokens"], row["output_tokens"], row["total_tokens"])
        model = row["model"]
        if model is not None and row["cost_runs"]:
            if model not in prices:
                found = fetch(_PRICE.bindparams(model=model, start_ns=start_ns))
                prices[model] = found[0] if found and found[0]["id"] is not None else None
            group.cost(_cost(prices[model], row))
        if row["bucket"] is not None:  # finished runs (a running one has no duration)
            add(group.durations, {str(row["bucket"]): row["runs"]})
            group.least = min(group.least, row["least"])
            group.greatest = max(group.greatest, row["greatest"])


def _cost(price: Any, sums: Any) -> float | None:
    """What runs_v's costs of these runs add up to, from their ``cost_sums`` at ``price``."""
    if price is None:
        return None
    given = float(price["input_usd_per_mtok"])
    read, written = price["cache_read_usd_per_mtok"], price["cache_write_usd_per_mtok"]
    usd_per_mtok = (
        float(sums["cost_uncached_input_tokens"]) * given
        + float(sums["cost_cache_read_tokens"]) * (given if read is None else float(read))
        + float(sums["cost_cache_creation_tokens"]) * (given if written is None else float(written))
        + float(sums["cost_output_tokens"]) * float(price["output_usd_per_mtok"])
    )
    return usd_per_mtok / 1_000_000.0


def _stat(key: Any, group: _Group, by: str, percentiles: Sequence[int]) -> Stat:
    p50, p95, p99 = (
        percentile(group.durations, p, group.least, group.greatest) for p in percentiles
    )
    return Stat(
        key=day_text(key) if by == "day" else key,
        runs=group.runs,
        errors=group.errors,
        error_rate=group.errors / group.runs,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        input_tokens=group.input_tokens,
        output_tokens=group.output_tokens,
        total_tokens=group.total_tokens,
        cost_usd=group.cost_usd,
    )

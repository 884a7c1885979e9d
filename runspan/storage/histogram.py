"""Durations kept as counts per logarithmic bucket, each 1% wider than the one below: how a row of
``runs_daily`` keeps its runs' durations, and how percentiles are read back from many rows.

A percentile read from buckets is the middle of its bucket, so it is within half a percent of
the exact nearest-rank figure (or of the group's least and greatest duration, which are exact).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

RATIO = 1.01
LOG_RATIO = math.log(RATIO)
# Durations under a microsecond share the microsecond's bucket.
LEAST_MS = 0.001

Histogram = dict[int, int]


def bucket(duration_ms: float) -> int:
    """The bucket of a duration; the database computes the same (``sqlfuncs.duration_bucket``)."""
    return math.floor(math.log(max(duration_ms, LEAST_MS)) / LOG_RATIO)


def plus(total: int | None, value: int | None) -> int | None:
    """``total + value`` as SQL's ``sum()`` adds: unknown (``None``) stays unknown."""
    return total if value is None else int(value) + (total or 0)


def add(into: dict[str, int], other: Mapping[str, int]) -> None:
    """Add ``other`` into ``into``, keyed by the bucket's number as text, as JSON keeps it:
    merging a month of rollups, converting each key would take most of the time."""
    get = into.get
    for key, count in other.items():
        into[key] = get(key, 0) + count


def _loads() -> Callable[[str], dict[str, int]]:
    try:
        import orjson  # noqa: PLC0415 - optional (see runspan.tracer.serialize)
    except ImportError:
        return json.loads
    # A histogram's keys are text and its counts fit in 64 bits: orjson reads it as json does
    # (general JSON it does not: it reads integers over 64 bits as floats), three times faster.
    return orjson.loads


#: A rollup's histogram from its JSON text.
loads = _loads()


def as_json(counts: Histogram) -> dict[str, int]:
    return {str(key): count for key, count in sorted(counts.items())}


def percentile(counts: Mapping[Any, int], p: int, least: float, greatest: float) -> float | None:
    """The nearest-rank ``p``-th percentile, as the middle of its bucket kept within
    ``[least, greatest]``; ``None`` for no durations. Keys are bucket numbers, or their text."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(1, -(-p * total // 100))  # the least rank with rank * 100 >= p * total
    seen = 0
    for key in sorted(counts, key=int):
        seen += counts[key]
        if seen >= rank:
            return min(max(math.exp((int(key) + 0.5) * LOG_RATIO), least), greatest)
    return greatest

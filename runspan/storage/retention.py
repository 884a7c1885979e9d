"""Keeping a run history to its age: what ``runspan prune`` and the writer's ``retention_days``
both do.

Whole traces go (a trace that started before the cutoff, with all its runs), a chunk of traces
in one short transaction, so that pruning a large history never holds the write lock long
enough to stall the apps writing to it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select

from runspan.logs import RateLimitedLog, logger
from runspan.storage.partitions import DETACH_WAIT_SECONDS, drop_before, make_ahead
from runspan.storage.rollups import Rollups, forget_before, mark_stale
from runspan.storage.schema import DAY_NS, runs, slowest_runs, traces
from runspan.storage.trace_costs import Repricer, count_groups, group_keys

RETENTION_DAYS_ENV = "RUNSPAN_RETENTION_DAYS"
# Traces deleted per transaction.
CHUNK_TRACES = 1000
# How often the writer applies retention, and looks for days and hours to roll up (an hour
# is rolled up ten minutes after it ends: within a minute of that).
UPKEEP_SECONDS = 3600.0
ROLLUP_SECONDS = 60.0
# How often the writer looks whether a price changed (one row read), to price the stored costs
# again (runspan.storage.trace_costs).
PRICE_CHECK_SECONDS = 10.0
# Catching up, the writer rests this many times as long as a visit took before the next.
_CATCH_UP_REST = 4.0
# Chunks the writer deletes per visit: a backlog of old runs is worked off visit by visit,
# between batches, instead of holding the writer from its queue.
_CHUNKS_PER_VISIT = 20


@dataclass(frozen=True)
class Removed:
    traces: int
    runs: int
    done: bool  # nothing older than the cutoff is left


def remove_before(
    engine: Engine,
    cutoff_ns: int,
    max_chunks: int | None = None,
    detach_wait_seconds: float | None = None,
) -> Removed:
    """Remove every trace that started before ``cutoff_ns``, with its runs; at most
    ``max_chunks`` chunks of them. Days and hours left with fewer runs are rolled up again.
    On PostgreSQL the days before the cutoff's go whole, their partitions dropped (a detach
    waiting ``detach_wait_seconds`` at most for reads that began before it)."""
    removed_traces = removed_runs = chunks = 0
    if engine.dialect.name == "postgresql":
        # Runs that started before the cutoff are of traces that did: their days go whole.
        removed_runs += drop_before(engine, cutoff_ns, detach_wait_seconds)
    with engine.begin() as connection:
        # A run that started before the cutoff is of a trace that did: it goes.
        connection.execute(delete(slowest_runs).where(slowest_runs.c.start_ns < cutoff_ns))
        # So do the rollups of the days and hours before it.
        forget_before(connection, cutoff_ns)
    while max_chunks is None or chunks < max_chunks:
        chunks += 1
        with engine.begin() as connection:
            found = connection.execute(
                select(traces.c.trace_id, traces.c.start_ns)
                .where(traces.c.start_ns < cutoff_ns)
                .limit(CHUNK_TRACES)
            ).all()
            chunk = [trace_id for trace_id, _ in found]
            if not chunk:
                forget_before(connection, cutoff_ns)  # rolled up again meanwhile
                return Removed(removed_traces, removed_runs, done=True)
            # A trace's runs start at its stored start or later: on PostgreSQL a constant by
            # which the planner leaves the older days' partitions out.
            ours = runs.c.trace_id.in_(chunk) & (runs.c.start_ns >= min(s for _, s in found))
            # The day and hour of the cutoff lose the runs before it; later ones, those of
            # traces that began before it.
            changed = connection.execute(
                select(runs.c.start_ns).where(ours, runs.c.start_ns >= cutoff_ns)
            ).scalars()
            mark_stale(connection, [cutoff_ns - 1, *changed], kept_from_ns=cutoff_ns)
            keys = group_keys(connection, chunk)
            removed_runs += connection.execute(delete(runs).where(ours)).rowcount
            removed_traces += connection.execute(
                delete(traces).where(traces.c.trace_id.in_(chunk))
            ).rowcount
            count_groups(connection, keys)  # the conversations and days left with fewer
            connection.execute(delete(slowest_runs).where(slowest_runs.c.trace_id.in_(chunk)))
    return Removed(removed_traces, removed_runs, done=False)


def retention_days_from(
    given: float | None, environ: Mapping[str, str] = os.environ
) -> float | None:
    """``retention_days``, else ``RUNSPAN_RETENTION_DAYS``; ``None`` keeps every run.

    Raises:
        ValueError: not a positive number, naming the argument or the variable.
    """
    shown: object
    if given is None:
        raw = environ.get(RETENTION_DAYS_ENV, "").strip()
        if not raw:
            return None
        source, shown = RETENTION_DAYS_ENV, raw
        try:
            days = float(raw)
        except ValueError:
            days = math.nan
    else:
        source, shown = "retention_days", given
        numeric = isinstance(given, int | float) and not isinstance(given, bool)
        days = float(given) if numeric else math.nan
    if not 0 < days < math.inf:
        raise ValueError(
            f"{source}={shown!r}: use a positive number of days (runs older are deleted by the"
            " writer), or leave it unset to keep every run"
        )
    return days


class Upkeep:
    """The writer's upkeep: now and then, in its own thread between batches (under the writer's
    lock), roll up the days and hours that closed (runspan.storage.rollups), price the stored
    costs again after a price changed (runspan.storage.trace_costs), remove what is older than
    ``retention_days`` and, on PostgreSQL, make the next days' partitions. Never raises: a
    failure is logged, and tried again later."""

    def __init__(
        self,
        retention_days: float | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.retention_days = retention_days
        self._monotonic, self._time_ns = monotonic, time_ns
        self._next_retention = self._next_rollup = self._next_partitions = 0.0
        self._rollups = Rollups()
        self._repricer = Repricer(monotonic)
        self._next_reprice = 0.0
        self._log = RateLimitedLog(interval=3600.0)

    def visit_if_due(self, engine: Engine) -> None:
        now = self._monotonic()
        if self.retention_days is not None and now >= self._next_retention:
            self._next_retention = now + UPKEEP_SECONDS
            try:
                if not self._remove_old(engine):
                    self._next_retention = now + 1.0  # more to remove: soon again, in chunks
            except Exception:
                self._log.exception("retention", "runspan: could not apply retention_days")
        if now >= self._next_partitions and engine.dialect.name == "postgresql":
            self._next_partitions = now + ROLLUP_SECONDS
            try:
                make_ahead(engine, self._time_ns())
            except Exception:
                self._log.exception("partitions", "runspan: could not make the next days' runs")
        if now >= self._next_rollup:
            self._next_rollup = now + ROLLUP_SECONDS
            try:
                if not self._rollups.visit(engine, self._time_ns()):
                    # More to roll up (a history stored before): soon again, but after four
                    # times as long as this visit took, so that the writer keeps at least four
                    # fifths of its time for the app's spans while it catches up.
                    spent = self._monotonic() - now
                    self._next_rollup = now + spent + max(1.0, _CATCH_UP_REST * spent)
            except Exception:
                self._log.exception("rollups", "runspan: could not roll up closed days and hours")

        if now >= self._next_reprice:
            self._next_reprice = now + PRICE_CHECK_SECONDS
            try:
                if not self._repricer.visit(engine):
                    spent = self._monotonic() - now
                    self._next_reprice = now + spent + max(1.0, _CATCH_UP_REST * spent)
            except Exception:
                self._log.exception("prices", "runspan: could not price the stored costs again")

    def _remove_old(self, engine: Engine) -> bool:
        """One visit; ``False`` if old runs are still left to remove."""
        assert self.retention_days is not None
        cutoff = self._time_ns() - int(self.retention_days * DAY_NS)
        removed = remove_before(
            engine, cutoff, max_chunks=_CHUNKS_PER_VISIT, detach_wait_seconds=DETACH_WAIT_SECONDS
        )
        if removed.traces or removed.runs:
            logger.info(
                "runspan: retention of %g days removed %d traces and %d runs",
                self.retention_days,
                removed.traces,
                removed.runs,
            )
        return removed.done

"""A busy service's last hours: the runs no rollup holds yet, which every read counts from ``runs``.

A service at ``--rate`` runs a second (default 300) for ``--hours`` hours (default 3) up to a
moment ``--at`` (a UTC time of day, HH:MM; the last one before now), written through the
writer's statements (the traces of bench/scale.py), then rolled up as the writer's visits leave
it at that moment. Printed: how long the writer's longest visit held it (a busy slice's rollup,
or an hour's or a day's), an hour and a day rolled up again, how many runs no rollup holds, and
the median of 5 of the reads that count them: ``runspan stats`` over a month, ``runspan runs``
with a filter the rollups narrow, and docs/queries.md's queries over ``runs_daily_v``, in SQLite
(a temporary file) and PostgreSQL (a throwaway cluster, unless ``--postgres-url`` names one). ::

    python bench/busy.py [--rate 300] [--hours 3] [--at 02:03] [--skip-postgres] [--skip-sqlite]

The runs no rollup holds are the open ten-minute slice and the four minutes after a slice ends
before it is rolled up (runspan.storage.rollups): the default moment, 02:03, is the worst, a
minute before the slice before is rolled up. Before revision 0017 they were the open hour and
the ten minutes after, and 02:09 was the worst; 02:00 also closes the day before.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scale import DAY_NS, HOUR_NS, Figures, documented_queries, load, median_ms
from sqlalchemy import create_engine, text

from runspan.storage import RunFilter, RunStore, SqlSpanExporter, rollups
from runspan.testing import postgres as postgres_server

# Where runs_daily_v starts counting from runs: the view's own bound.
_SLICES = importlib.import_module("runspan.storage.migrations.versions.0017_ten_minute_slices")


def moment(at: str) -> int:
    """The last time of day ``at`` (UTC) before now, in ns."""
    hours, minutes = (int(part) for part in at.split(":"))
    now = time.time_ns()
    chosen = now // DAY_NS * DAY_NS + (hours * 60 + minutes) * 60 * 10**9
    return chosen if chosen <= now else chosen - DAY_NS


def roll_up(url: str, now_ns: int) -> None:
    """The writer's visits at ``now_ns``, until nothing is due; the longest is how long a busy
    period's rollup holds the writer."""
    engine = create_engine(url)
    visits, longest, started = rollups.Rollups(), 0.0, time.perf_counter()
    try:
        while True:
            visit = time.perf_counter()
            done = visits.visit(engine, now_ns)
            longest = max(longest, time.perf_counter() - visit)
            if done:
                break
    finally:
        engine.dispose()
    print(
        f"  rolled up in {time.perf_counter() - started:,.1f} s; the longest visit held the"
        f" writer {longest:,.1f} s"
    )
    # The newest hour and day rolled up, rolled up again as after a late run: how long each
    # holds the writer.
    engine = create_engine(url)
    try:
        for period, what in ((rollups.HOUR, "an hour"), (rollups.DAY, "a day")):
            rolled = period.rolled
            with engine.connect() as connection:
                number, runs = connection.execute(
                    text(
                        f"SELECT {period.column}, runs FROM {rolled.name} WHERE runs IS NOT NULL"
                        f" ORDER BY {period.column} DESC LIMIT 1"
                    )
                ).one_or_none() or (None, 0)
            if number is not None:
                started = time.perf_counter()
                rollups.roll_up(engine, period, number, now_ns)
                took = time.perf_counter() - started
                print(f"  {what} of {runs:,} runs rolled up again in {took:,.2f} s")
    finally:
        engine.dispose()


def reads(url: str, now_ns: int) -> None:
    month = RunFilter(since=now_ns - 30 * DAY_NS)
    figures = Figures()
    with RunStore(url) as store:
        tail = store.sql(
            "SELECT count(*), min(start_ns) FROM runs"
            f" WHERE start_ns >= {_SLICES.SLICE_FROM} * {_SLICES.SLICE_NS}"
        ).rows[0]
        minutes = (now_ns - tail[1]) / 60e9 if tail[1] is not None else 0.0
        print(f"  runs no rollup holds: {tail[0]:,} (the last {minutes:.0f} minutes)")
        stats: dict[str, Callable[[], Any]] = {
            "stats (by name, a month)": lambda: store.stats("name", month),
            "stats --by model (a month)": lambda: store.stats("model", month),
            "stats --by day (a month)": lambda: store.stats("day", month),
            # A filter nothing matches reads all that the rollups cannot rule out.
            "runs --node no-such-node": lambda: store.runs(RunFilter(node="no-such-node")),
            "runs --status error": lambda: store.runs(RunFilter(status="error")),
        }
        for label, read in stats.items():
            figures[f"runspan {label}"] = median_ms(read)
        for heading, statement in documented_queries(store.engine.dialect.name).items():
            if "runs_daily_v" in statement:
                figures[f"sql: {heading[:60]}"] = median_ms(
                    lambda statement=statement: store.sql(statement.rstrip(";"))  # type: ignore[misc]
                )


def measure(name: str, url: str, reader: Callable[[str], str], args: argparse.Namespace) -> None:
    SqlSpanExporter(url).shutdown()  # the schema
    now_ns = moment(args.at)
    total = int(args.rate * args.hours * 3600)
    print(
        f"\n{name}: {total:,} runs, {args.rate:g} a second for the {args.hours:g} hours up to"
        f" {args.at} UTC",
        flush=True,
    )
    _, rate = load(url, total, int(args.hours * HOUR_NS), now_ns)
    print(f"  written at {rate:,.0f} runs/s")
    roll_up(url, now_ns)
    reads(reader(url), now_ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="runs a second")
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--at", default="02:03", help="the moment read at, HH:MM UTC")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory(prefix="runspan-busy-") as folder:
            url = f"sqlite:///{Path(folder) / 'busy.db'}"
            measure("SQLite", url, lambda url: url, args)
    if not args.skip_postgres:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(postgres_server.serving(args.postgres_url))
            reader = functools.partial(postgres_server.add_reader, server)
            measure("PostgreSQL", postgres_server.create_database(server), reader, args)


if __name__ == "__main__":
    main()

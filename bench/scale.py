"""Scale: a run history of ten million runs, written through runspan's writer, then every read.

For each database: a history of ``--runs`` runs (default 10,000,000) over ``--days`` days
(default 90, a quarter), written by the writer's own ``write_rows`` in catch-up statements; the
writer's cost per span on top of that history and on an empty database, round by round; the
time the writer's visits take to roll the history up into ``runs_daily`` and ``runs_hourly``;
then the median time of each read users make (5 runs, one if a read takes over 2 s):

- every SQL query of docs/queries.md, in its database's variant, as ``runspan sql`` runs it;
- what ``runspan runs``, ``traces``, ``show`` and ``stats`` ask (in-process: the reads, without
  the command's start-up, which ``bench/startup.py`` measures);
- what Jaeger asks ``runspan serve``: services, operations, a trace search over the UI's default
  hour and over two days, a trace by id, dependencies over a day.

The history is realistic in the ways that decide index costs: traces of ten runs (a root chain,
a prompt, two model calls, tools, a parser) in time order, ids that are UUIDv7 as LangChain's
run ids are, 12 chain names, 4 models, 2% errors, content of a few hundred bytes, a third of the
traces in conversations (session and user). PostgreSQL is a throwaway cluster (fsync on), unless
``--postgres-url`` names one; it is read, as ``runspan sql`` reads it, through a reader role. ::

    python bench/scale.py [--runs 10000000] [--days 90] [--skip-postgres] [--skip-sqlite]

A history loaded before (``--folder`` keeps the SQLite file; a PostgreSQL database lives as
long as its cluster) is read again, without loading or writing, with ``--read URL``: its end is
its newest trace's start, and that trace is the one ``show`` reads.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import URL, create_engine, text
from storage import chain_spans, write_throughput

from runspan.storage import RunFilter, RunStore, SqlSpanExporter
from runspan.storage.rollups import Rollups
from runspan.storage.rows import COLUMNS
from runspan.storage.search import TraceSearch
from runspan.storage.upsert import write_rows
from runspan.testing import postgres as postgres_server

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
_QUERIES = Path(__file__).parents[1] / "docs" / "queries.md"
_NAMES = [f"chain_{i}" for i in range(12)]
_MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3-70b"]
_ROWS_PER_TRANSACTION = 10_240
_SLOW_READ_S = 2.0


def uuid7(ms: int, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 for a time, as LangChain makes run ids: time-ordered, so their indexes grow at
    the end."""
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64
    return uuid.UUID(int=value | 0b10 << 62 | rng.getrandbits(62))


def history(total: int, span_ns: int, now_ns: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """Rows of ``total // 10`` traces of ten runs, oldest first, over ``span_ns`` up to
    ``now_ns``."""
    rng = random.Random(seed)
    count = total // 10
    step = span_ns // max(count, 1)
    chunk: list[dict[str, Any]] = []
    for number in range(count):
        start = now_ns - span_ns + number * step + rng.randrange(max(step, 1))
        root = uuid7(start // 10**6, rng)
        trace_id = root.hex
        name = rng.choice(_NAMES)
        failed = rng.random() < 0.02
        conversation = rng.random() < 1 / 3
        session = f"session-{rng.randrange(100_000)}" if conversation else None
        user = f"user-{rng.randrange(5_000)}" if conversation else None
        duration = rng.lognormvariate(6.5, 0.8)  # ms; a few seconds at the tail
        question = f"What should I pack for trip {rng.randrange(10**6)}?"
        for index in range(10):
            offset = 0 if index == 0 else int(duration * 1e6 * index / 12)
            run_id = root if index == 0 else uuid7((start + offset) // 10**6, rng)
            is_model = index in (2, 5)
            length = duration if index == 0 else duration / 12
            error = failed and index in (0, 9)
            row = dict.fromkeys(COLUMNS)
            row.update(
                run_id=str(run_id),
                parent_run_id=None if index == 0 else str(root),
                trace_id=trace_id,
                span_id=run_id.hex[16:],
                parent_span_id=None if index == 0 else trace_id[16:],
                service_name="bench",
                name=name if index == 0 else ("chat" if is_model else f"step_{index}"),
                run_type="chain" if index == 0 else ("llm" if is_model else "tool"),
                span_kind="client" if is_model else "internal",
                status="error" if error else "ok",
                error_type="TimeoutError" if error else None,
                error_message="the weather service did not answer" if error else None,
                start_ns=start + offset,
                end_ns=start + offset + int(length * 1e6),
                duration_ms=length,
                inputs=json.dumps({"question": question, "context": "x" * 120}),
                outputs=json.dumps({"answer": "Pack a light raincoat and comfortable shoes."}),
                attributes="{}",
                # As LangChain tags them: a sequence's steps by number, the root by release.
                tags=json.dumps(["release:2026.11"] if index == 0 else [f"seq:step:{index}"]),
                session_id=session,
                user_id=user,
            )
            if is_model:
                tokens_in, tokens_out = rng.randrange(50, 4000), rng.randrange(5, 800)
                row.update(
                    model_name=rng.choice(_MODELS),
                    provider="openai",
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    total_tokens=tokens_in + tokens_out,
                )
            chunk.append(row)
        if len(chunk) >= _ROWS_PER_TRANSACTION:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load(url: str, total: int, span_ns: int, now_ns: int) -> tuple[str, float]:
    """Write the history through the writer's statements; one trace id of it, and runs/s."""
    engine = create_engine(url)
    some_trace = ""
    started = time.perf_counter()
    written = 0
    for chunk in history(total, span_ns, now_ns):
        with engine.begin() as connection:
            write_rows(connection, chunk, catching_up=True)
        written += len(chunk)
        if written % 1_000_000 < len(chunk):
            print(f"    {written:,} runs, {written / (time.perf_counter() - started):,.0f}/s")
        some_trace = chunk[len(chunk) // 2]["trace_id"]
    rate = written / (time.perf_counter() - started)
    # Statistics, and on PostgreSQL the visibility map, as autovacuum keeps them in use.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
        )
    engine.dispose()
    return some_trace, rate


def write_cost_us(url: str, spans: list[ReadableSpan], batch: int = 64) -> float:
    """Microseconds of the writer a span, in batches as it writes them while keeping up, but
    without its pauses for the app (they are time given away, not cost)."""
    return 1e6 / write_throughput(url, spans, batch, behind=True)


def median_ms(read: Callable[[], Any], repeats: int = 5) -> float:
    started = time.perf_counter()
    read()  # warm: the figure is for a database in use, not a cold disk
    first = time.perf_counter() - started
    if first > _SLOW_READ_S:
        return first * 1000
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def documented_queries(dialect: str) -> dict[str, str]:
    """docs/queries.md's queries by their heading, in ``dialect``'s variant."""
    found: dict[str, str] = {}
    heading = "first example"
    for part in re.split(r"^(### .*)$", _QUERIES.read_text(), flags=re.MULTILINE):
        if part.startswith("### "):
            heading = part[4:].strip()
            continue
        for block in re.findall(r"```sql\n(.*?)```", part, flags=re.DOTALL):
            first = block.strip().splitlines()[0]
            if first.endswith("only") and dialect not in first:
                continue
            found[heading if heading not in found else heading + " (2)"] = block.strip()
    return found


class Figures(dict[str, float]):
    """Figures printed as they come: a slow read at ten million runs takes minutes."""

    def __setitem__(self, name: str, value: float) -> None:
        super().__setitem__(name, value)
        print(f"  {name:66s} {value:10,.1f} ms", flush=True)


def plain_session_reads(url: URL, dialect: str, figures: Figures) -> None:
    """The documented queries again, in a session as psql opens one: runspan's connections turn
    JIT off, but a session of the server's defaults compiles a query the planner prices over
    100,000, and the views' estimates can cross that when their answer takes milliseconds."""
    engine = create_engine(url)  # none of runspan's settings
    try:
        with engine.connect() as connection:
            for heading, statement in documented_queries(dialect).items():
                figures[f"sql, plain session: {heading[:46]}"] = median_ms(
                    lambda statement=statement: connection.exec_driver_sql(  # type: ignore[misc]
                        statement.rstrip(";").replace("%", "%%")
                    ).all()
                )
                connection.rollback()
    finally:
        engine.dispose()


def reads(url: str, trace_id: str, now_ns: int) -> dict[str, float]:
    month = RunFilter(since=now_ns - 30 * DAY_NS)
    figures = Figures()
    with RunStore(url) as store:
        dialect = store.engine.dialect.name
        for heading, statement in documented_queries(dialect).items():
            figures[f"sql: {heading[:60]}"] = median_ms(
                lambda statement=statement: store.sql(statement.rstrip(";"))  # type: ignore[misc]
            )
        if dialect == "postgresql":
            plain_session_reads(store.engine.url, dialect, figures)
        cli: dict[str, Callable[[], Any]] = {
            "runs (newest 50)": lambda: store.runs(RunFilter(skip_types=("prompt", "parser"))),
            "runs --slowest (20)": lambda: store.runs(limit=20, order="slowest"),
            "runs --name --status error": lambda: store.runs(
                RunFilter(name="chain_3", status="error")
            ),
            "runs --since 1h --slowest": lambda: store.runs(
                RunFilter(since=now_ns - HOUR_NS), limit=20, order="slowest"
            ),
            "runs --roots": lambda: store.runs(RunFilter(roots_only=True)),
            # A model and a status no run of it has: read newest first to the start.
            "runs --model --status (none match)": lambda: store.runs(
                RunFilter(model="gpt-4o", status="error")
            ),
            "runs --tag (none match)": lambda: store.runs(RunFilter(tag=("no-such-tag",))),
            "traces (newest 50)": store.traces,
            "traces --user": lambda: store.traces(user="user-42"),
            "sessions (latest 50)": store.sessions,
            "show <trace id>": lambda: store.tree(trace_id),
            "stats (by name, a month)": lambda: store.stats("name", month),
            "stats --by model (a month)": lambda: store.stats("model", month),
            "stats --by day (a month)": lambda: store.stats("day", month),
        }
        for label, read in cli.items():
            figures[f"runspan {label}"] = median_ms(read)
        hour = TraceSearch(service="bench", start_min_ns=now_ns - HOUR_NS, start_max_ns=now_ns)
        two_days = TraceSearch(
            service="bench", start_min_ns=now_ns - 2 * DAY_NS, start_max_ns=now_ns
        )
        chat = TraceSearch(
            service="bench",
            operation="chat",
            start_min_ns=now_ns - HOUR_NS,
            start_max_ns=now_ns,
            duration_min_ms=100,
        )
        serve: dict[str, Callable[[], Any]] = {
            "services": store.services,
            "operations": lambda: store.operations("bench"),
            "find traces, last hour": lambda: store.find_traces(hour),
            "find traces, 2 days": lambda: store.find_traces(two_days),
            "find traces, operation + min duration": lambda: store.find_traces(chat),
            "trace by id": lambda: store.runs_of_traces([trace_id]),
            "dependencies, a day": lambda: store.dependencies(now_ns - DAY_NS, now_ns),
        }
        for label, read in serve.items():
            figures[f"serve: {label}"] = median_ms(read)
    return figures


def measure(
    name: str,
    url: str,
    new_database: Callable[[], str],
    reader: Callable[[str], str],
    args: argparse.Namespace,
) -> None:
    SqlSpanExporter(url).shutdown()  # the schema
    now_ns = time.time_ns() - 60 * 10**9  # the history ends just before the spans written next
    started = time.perf_counter()
    print(f"\n{name}: writing {args.runs:,} runs", flush=True)
    trace_id, rate = load(url, args.runs, args.days * DAY_NS, now_ns)
    took = time.perf_counter() - started
    print(f"{name}: {args.runs:,} runs written in {took:,.0f} s ({rate:,.0f} runs/s)")
    # The writer rolls a stored history up between its batches, half a second a visit. First:
    # the writer's cost below is its cost once caught up (catching up, a third of its time goes
    # to rollups for a few minutes).
    engine = create_engine(url)
    rollups, visits, started = Rollups(), 1, time.perf_counter()
    while not rollups.visit(engine, time.time_ns()):
        visits += 1
    engine.dispose()
    print(
        f"{name}: rolled up into runs_daily and runs_hourly in {time.perf_counter() - started:,.0f}"
        f" s ({visits} visits of the writer)"
    )
    # The writer's cost a span, on this history and on an empty database, round by round.
    empty, full = [], []
    for _ in range(args.rounds):
        empty.append(write_cost_us(new_database(), chain_spans(args.spans)))
        full.append(write_cost_us(url, chain_spans(args.spans)))
    empty_us, full_us = statistics.median(empty), statistics.median(full)
    print(
        f"{name}: the writer, batches of 64, median of {args.rounds} rounds:"
        f" {empty_us:.1f} µs a span on an empty database, {full_us:.1f} µs on"
        f" {args.runs:,} runs ({full_us / empty_us:.2f} times)"
    )
    print(f"\nReads, {name}, {args.runs:,} runs over {args.days} days (median of 5)")
    reads(reader(url), trace_id, now_ns)


def read_again(url: str) -> None:
    """Every read, on a history loaded by an earlier run."""
    with RunStore(url) as store:
        newest = store.sql("SELECT trace_id, start_ns FROM traces ORDER BY start_ns DESC LIMIT 1")
        runs = store.sql("SELECT count(*) FROM runs").rows[0][0]
    if not newest.rows:
        raise SystemExit(f"{url}: no traces to read")
    trace_id, now_ns = newest.rows[0]
    print(f"Reads, {runs:,} runs (median of 5)")
    reads(url, trace_id, now_ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--spans", type=int, default=10_000, help="spans for the write cost")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the write cost")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--folder", type=Path, default=None, help="where the SQLite file goes")
    parser.add_argument(
        "--read", metavar="URL", help="only read the history an earlier run loaded at URL"
    )
    args = parser.parse_args()
    if args.read:
        read_again(args.read)
        return
    folder = args.folder or Path(tempfile.mkdtemp(prefix="runspan-scale-"))
    if not args.skip_sqlite:
        path = folder / "scale.db"
        path.unlink(missing_ok=True)
        empties = (f"sqlite:///{folder / f'empty-{n}.db'}" for n in itertools.count())
        measure("SQLite", f"sqlite:///{path}", lambda: next(empties), lambda url: url, args)
    if not args.skip_postgres:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(postgres_server.serving(args.postgres_url))
            measure(
                "PostgreSQL",
                postgres_server.create_database(server),
                lambda: postgres_server.create_database(server),
                lambda url: postgres_server.add_reader(server, url),
                args,
            )


if __name__ == "__main__":
    main()

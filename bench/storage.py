"""Storage figures: the writer's throughput, and query latency over a large run history.

Write throughput: spans of a real ``prompt | chat model | parser`` chain (4 runs per invoke,
with content and token usage), written by runspan's SQL exporter into a fresh SQLite file and a
fresh PostgreSQL database, in the batches its batch processor hands over: 64 spans, with pauses
for the app, while the writer keeps up; 1,024 without pauses while it catches up a backlog.

Query latency: a generated history (default 1,000,000 runs in traces of 10 over 30 days, 12 chain
names, 4 models, 2% errors), then the median of 5 runs of each question: the tree of one trace,
the 20 slowest runs, tokens per model per day over the 30 days, error rate per name per day.

PostgreSQL is a throwaway cluster started with the machine's initdb/pg_ctl (fsync on), unless
``--postgres-url`` names one. ::

    python bench/storage.py [--spans 50000] [--runs 1000000] [--postgres-url URL] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import create_engine, insert, text

from runspan.batching import CATCH_UP_BATCH_SIZE
from runspan.storage import RunFilter, RunStore, SqlSpanExporter
from runspan.storage.processor import DEFAULT_MAX_EXPORT_BATCH_SIZE
from runspan.storage.rows import COLUMNS
from runspan.storage.schema import runs
from runspan.testing import capture_spans
from runspan.testing import postgres as postgres_server

DAY_NS = 86_400 * 10**9
# As the writer's batch processor hands them over: (batch size, behind) for keeping up, catching up.
MODES = {
    "keeping up": (DEFAULT_MAX_EXPORT_BATCH_SIZE, False),
    "catching up": (CATCH_UP_BATCH_SIZE, True),
}


def chain_spans(count: int) -> list[ReadableSpan]:
    """``count`` spans (rounded up to whole invokes) of a real chain, with usage and content."""
    usage: Any = {"input_tokens": 42, "output_tokens": 7, "total_tokens": 49}
    model = GenericFakeChatModel(
        messages=itertools.repeat(
            AIMessage(
                content="Pack a light raincoat and comfortable shoes.",
                usage_metadata=usage,
                response_metadata={"model_name": "gpt-4o-mini"},
            )
        )
    )
    chain = (
        ChatPromptTemplate.from_template("What should I pack for {city}?")
        | model
        | StrOutputParser()
    )
    with capture_spans() as capture:
        for _ in range((count + 3) // 4):
            chain.invoke({"city": "Paris"}, config={"callbacks": [capture.handler]})
        return list(capture.spans)


def write_throughput(url: str, spans: list[ReadableSpan], batch: int, behind: bool) -> float:
    exporter = SqlSpanExporter(url)
    exporter.slices.behind = lambda: behind  # what the batch processor tells it
    try:
        exporter.export(spans[:batch])  # warm-up: connection, statement caches
        rest = spans[batch:]
        started = time.perf_counter()
        for start in range(0, len(rest), batch):
            exporter.export(rest[start : start + batch])
        elapsed = time.perf_counter() - started
    finally:
        exporter.shutdown()
    return len(rest) / elapsed


_NAMES = [f"chain_{i}" for i in range(12)]
_MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3-70b"]


def history(total: int, now_ns: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """Runs in traces of ten: a root chain, a prompt, two model calls, tools, a parser."""
    rng = random.Random(seed)
    window = 30 * DAY_NS
    chunk: list[dict[str, Any]] = []
    for _ in range(total // 10):
        start = now_ns - rng.randrange(window)
        trace = uuid.UUID(int=rng.getrandbits(128))
        trace_id = trace.hex
        name = rng.choice(_NAMES)
        failed = rng.random() < 0.02
        root_id = str(trace)
        duration = rng.lognormvariate(6.5, 0.8)  # ms; a few seconds at the tail
        for index in range(10):
            run_id = root_id if index == 0 else str(uuid.UUID(int=rng.getrandbits(128)))
            is_model = index in (2, 5)
            offset = 0 if index == 0 else int(duration * 1e6 * index / 12)
            length = duration if index == 0 else duration / 12
            row = dict.fromkeys(COLUMNS)
            row.update(
                run_id=run_id,
                parent_run_id=None if index == 0 else root_id,
                trace_id=trace_id,
                span_id=run_id.replace("-", "")[16:],
                parent_span_id=None if index == 0 else trace_id[16:],
                service_name="bench",
                name=name if index == 0 else ("chat" if is_model else f"step_{index}"),
                run_type="chain" if index == 0 else ("llm" if is_model else "tool"),
                span_kind="client" if is_model else "internal",
                status="error" if failed and index in (0, 9) else "ok",
                start_ns=start + offset,
                end_ns=start + offset + int(length * 1e6),
                duration_ms=length,
                inputs=json.dumps({"question": f"question {rng.randrange(10**6)}"}),
                attributes="{}",
            )
            if is_model:
                model = rng.choice(_MODELS)
                tokens_in, tokens_out = rng.randrange(50, 4000), rng.randrange(5, 800)
                row.update(
                    model_name=model,
                    provider="openai",
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    total_tokens=tokens_in + tokens_out,
                )
            chunk.append(row)
        if len(chunk) >= 20_000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load_history(url: str, total: int, now_ns: int) -> str:
    """Fill a new database; returns one trace id to ask for."""
    SqlSpanExporter(url).shutdown()  # creates the schema
    engine = create_engine(url)
    some_trace = ""
    with engine.begin() as connection:
        for chunk in history(total, now_ns):
            connection.execute(insert(runs), chunk)
            some_trace = chunk[len(chunk) // 2]["trace_id"]
        connection.execute(
            text(
                """
                INSERT INTO traces (trace_id, root_run_id, root_span_id, service_name, name,
                    start_ns, end_ns, duration_ms, status, run_count, error_count,
                    input_tokens, output_tokens, total_tokens)
                SELECT r.trace_id, r.run_id, r.span_id, r.service_name, r.name, r.start_ns,
                    r.end_ns, r.duration_ms, r.status, 10, 0, NULL, NULL, NULL
                FROM runs r WHERE r.parent_run_id IS NULL
                """
            )
        )
    # Statistics and (on PostgreSQL) the visibility map, as autovacuum keeps them in a database
    # in use, so that the covering indexes are read without visiting the table.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
        )
    engine.dispose()
    return some_trace


def median_ms(question: Callable[[], Any], repeats: int = 5) -> float:
    question()  # warm the cache: the figure is for a database in use, not a cold disk
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        question()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def query_latency(url: str, trace_id: str, now_ns: int) -> dict[str, float]:
    month = RunFilter(since=now_ns - 30 * DAY_NS)
    first_day = (now_ns - 30 * DAY_NS) // DAY_NS
    with RunStore(url) as store:
        return {
            "tree of one trace": median_ms(lambda: store.tree(trace_id)),
            "slowest 20 runs": median_ms(lambda: store.runs(order="slowest", limit=20)),
            "tokens per model per day, 30 days": median_ms(
                lambda: store.sql(
                    "SELECT model_name, start_day, sum(input_tokens), sum(output_tokens)"
                    " FROM runs WHERE model_name IS NOT NULL AND start_day >= :since"
                    " GROUP BY model_name, start_day",
                    {"since": first_day},
                )
            ),
            "error rate per name per day, 30 days": median_ms(
                lambda: store.sql(
                    "SELECT name, start_day, count(*) AS runs,"
                    " sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors"
                    " FROM runs WHERE start_day >= :since GROUP BY name, start_day",
                    {"since": first_day},
                )
            ),
            "stats by model, 30 days (p50/p95/p99, cost)": median_ms(
                lambda: store.stats("model", month)
            ),
        }


def report(title: str, figures: dict[str, float], unit: str) -> None:
    print(f"\n{title}")
    for name, value in figures.items():
        print(f"  {name:45s} {value:12,.1f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    targets: dict[str, str] = {}
    folder = Path(tempfile.mkdtemp(prefix="runspan-bench-"))
    targets["SQLite"] = "sqlite"
    with contextlib.ExitStack() as stack:
        if not args.skip_postgres:
            targets["PostgreSQL"] = stack.enter_context(postgres_server.serving(args.postgres_url))
        spans = chain_spans(args.spans)
        print(f"{len(spans):,} spans of prompt | chat model | parser")
        write = {}
        query: dict[str, dict[str, float]] = {}
        for name, target in targets.items():
            for mode, (batch, behind) in MODES.items():
                if name == "PostgreSQL":
                    url = postgres_server.create_database(target)
                else:
                    url = f"sqlite:///{folder / f'write-{batch}.db'}"
                label = f"{name}, {mode} (batches of {batch:,})"
                write[label] = write_throughput(url, spans, batch, behind)
        report("Writer throughput", write, "spans/s")
        now_ns = time.time_ns()
        for name, target in targets.items():
            if name == "SQLite":
                url = f"sqlite:///{folder / 'history.db'}"
            else:
                url = postgres_server.create_database(target)
            started = time.perf_counter()
            trace_id = load_history(url, args.runs, now_ns)
            print(f"\n{name}: {args.runs:,} runs loaded in {time.perf_counter() - started:.0f} s")
            # PostgreSQL is read, as `runspan sql` reads it, through a role that can only read.
            reader = url if name == "SQLite" else postgres_server.add_reader(target, url)
            query[name] = query_latency(reader, trace_id, now_ns)
        for name, figures in query.items():
            report(f"Query latency, {name}, {args.runs:,} runs (median of 5)", figures, "ms")


if __name__ == "__main__":
    main()

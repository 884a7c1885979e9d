"""End to end: 100,000 runs through runspan's handler into SQL with OTLP on.

``prompt | chat model | parser`` (4 runs an invoke) is invoked until 100,000 runs have been
traced, with runspan storing them (SQLite, then a PostgreSQL 15 started for the run, fsync on)
and exporting them over OTLP/gRPC to a receiver in another process. It prints runs/s from the
first invoke until ``flush()`` returns with everything written and sent, and how long that
final ``flush()`` took.

    python bench/ingest.py [--runs 100000] [--skip-postgres] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

sys.path.insert(0, str(Path(__file__).resolve().parent))
import otlp_sink
from workloads import workloads

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.exporters import OtlpSettings, otlp_span_processor
from runspan.storage import RunStore, StorageSpanProcessor
from runspan.testing import postgres as postgres_server

RUNS_PER_INVOKE = 4


def ingest(name: str, url: str, endpoint: str, runs: int) -> None:
    provider = TracerProvider(id_generator=RunIdGenerator(), shutdown_on_exit=False)
    provider.add_span_processor(StorageSpanProcessor(url))
    settings = OtlpSettings.build(endpoint, protocol="grpc")
    assert settings is not None
    otlp = otlp_span_processor(settings)
    provider.add_span_processor(otlp)
    handler = TracingCallbackHandler(tracer_provider=provider)
    workload = next(w for w in workloads() if w.name == "prompt | chat model | parser")
    config: dict[str, object] = {"callbacks": [handler]}
    invokes = runs // RUNS_PER_INVOKE
    started = time.perf_counter()
    for _ in range(invokes):
        workload.call(config)  # type: ignore[arg-type]
    invoked = time.perf_counter()
    assert provider.force_flush(600_000), "flush did not finish"
    done = time.perf_counter()
    dropped = otlp.dropped
    provider.shutdown()
    with RunStore(url) as store:
        stored = store.sql("SELECT count(*) FROM runs").rows[0][0]
    total = invokes * RUNS_PER_INVOKE
    print(f"\n{name} + OTLP: {total:,} runs")
    invoking, flushing, overall = invoked - started, done - invoked, done - started
    print(f"  invoking                {invoking:8.1f} s   {total / invoking:9,.0f} runs/s")
    print(f"  final flush()           {flushing:8.1f} s")
    print(f"  end to end              {overall:8.1f} s   {total / overall:9,.0f} runs/s")
    print(f"  rows in the database    {stored:8,d}   spans the OTLP queue dropped: {dropped:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="runspan-ingest-"))
    try:
        with otlp_sink.running() as endpoint:
            ingest("SQLite", f"sqlite:///{folder / 'runs.db'}", endpoint, args.runs)
            if not args.skip_postgres:
                with postgres_server.serving(args.postgres_url) as admin:
                    url = postgres_server.create_database(admin)
                    ingest("PostgreSQL", url, endpoint, args.runs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""runspan serve's figures: OTLP ingest into SQLite and PostgreSQL, and Jaeger's reads over a
large history.

Ingest: ``runspan serve`` in its own process; two client processes send OTLP/gRPC requests of
512 spans each (a LangChain-like span: a dozen attributes, 400 characters of content), new ids
every request, as fast as they are answered, for ``--seconds``. The figure is spans stored per
second, counted in the database. The clients build each request once and only change its ids,
so that on 2 cores the figure is the server's, not the clients'.

Reads: a generated history of ``--runs`` runs (traces of ten, over 30 days, as
bench/storage.py makes it), then over Jaeger's gRPC API the median of 5 of: ``FindTraces`` by
service + operation + one attribute over the last hour, and ``GetTraces`` of one 50-run trace.

    python bench/serve.py [--seconds 15] [--runs 1000000] [--skip-postgres] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from storage import load_history, median_ms

from runspan.serve.jaeger import trace_storage_pb2, trace_storage_pb2_grpc
from runspan.storage.rows import COLUMNS
from runspan.storage.schema import runs
from runspan.testing import postgres as postgres_server

RUNSPAN = Path(sys.executable).parent / "runspan"
_READY = re.compile(r"OTLP gRPC on ([\d.]+):(\d+)")

_CLIENT = """
import os, sys, time
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

endpoint, seconds = sys.argv[1], float(sys.argv[2])
now = time.time_ns()
attributes = [
    KeyValue(key=f"app.key{i}", value=AnyValue(string_value=f"value {i}")) for i in range(10)
] + [
    KeyValue(key="langchain.run_type", value=AnyValue(string_value="chain")),
    KeyValue(key="input.value", value=AnyValue(string_value='"' + "x" * 400 + '"')),
    KeyValue(key="input.mime_type", value=AnyValue(string_value="application/json")),
]
spans = [
    Span(name=f"step {i % 8}", kind=1, start_time_unix_nano=now, end_time_unix_nano=now + 10**6,
         attributes=attributes)
    for i in range(512)
]
request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[ResourceSpans(
    resource={"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="load"))]},
    scope_spans=[ScopeSpans(spans=spans)],
)])
stub = trace_service_pb2_grpc.TraceServiceStub(grpc.insecure_channel(endpoint))
sent = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.trace_id = os.urandom(16)
        span.span_id = os.urandom(8)
    try:
        stub.Export(request, timeout=30)
        sent += 512
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.UNAVAILABLE:
            raise
        time.sleep(0.1)  # busy: back off, as an exporter would
print(sent)
"""


@contextlib.contextmanager
def serving(url: str) -> Iterator[str]:
    """``runspan serve`` on ``url``; yields its gRPC address."""
    process = subprocess.Popen(
        [str(RUNSPAN), "serve", "--grpc-port", "0", "--http-port", "0", "--database-url", url],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    found = None
    while found is None:
        line = process.stderr.readline()
        if not line:
            raise RuntimeError("runspan serve did not start")
        found = _READY.search(line)
    try:
        yield f"{found[1]}:{found[2]}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        process.stderr.close()


def count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = connection.execute(text("SELECT count(*) FROM runs")).scalar_one()
    engine.dispose()
    return int(found)


def ingest_rate(url: str, seconds: float, clients: int = 2) -> float:
    with serving(url) as address:
        before = count(url)
        started = time.perf_counter()
        senders = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(_CLIENT), address, str(seconds)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(clients)
        ]
        sent = sum(int(sender.communicate()[0]) for sender in senders)
        elapsed = time.perf_counter() - started
    stored = count(url) - before
    assert stored == sent, f"{sent} acknowledged, {stored} stored"
    return stored / elapsed


def add_big_trace(url: str, now_ns: int) -> str:
    """One trace of 50 runs in the last hour, of service "bench" and operation "agent"."""
    trace_id = os.urandom(16).hex()
    rows = []
    for index in range(50):
        row = dict.fromkeys(COLUMNS)
        span_id = os.urandom(8).hex()
        row.update(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=None if index == 0 else rows[0]["span_id"],
            service_name="bench",
            name="agent" if index == 0 else f"step_{index}",
            run_type="chain",
            span_kind="internal",
            status="ok",
            start_ns=now_ns - 10**9 + index * 10**6,
            end_ns=now_ns - 10**9 + index * 10**6 + 10**6,
            duration_ms=1.0,
            inputs='{"question": "where to?"}',
            attributes='{"gen_ai.request.model": "gpt-4o-mini"}',
        )
        rows.append(row)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(insert(runs), rows)
    engine.dispose()
    return trace_id


def read_latency(url: str, trace_id: str, now_ns: int) -> dict[str, float]:
    with serving(url) as address:
        channel = grpc.insecure_channel(address)
        reader = trace_storage_pb2_grpc.TraceReaderStub(channel)
        query = trace_storage_pb2.TraceQueryParameters(
            service_name="bench",
            operation_name="agent",
            attributes=[
                trace_storage_pb2.KeyValue(
                    key="gen_ai.request.model",
                    value=trace_storage_pb2.AnyValue(string_value="gpt-4o-mini"),
                )
            ],
            search_depth=20,
        )
        query.start_time_min.FromNanoseconds(now_ns - 3600 * 10**9)
        query.start_time_max.FromNanoseconds(now_ns)

        def find() -> None:
            found = list(reader.FindTraces(trace_storage_pb2.FindTracesRequest(query=query)))
            assert found

        def get() -> None:
            request = trace_storage_pb2.GetTracesRequest(
                query=[trace_storage_pb2.GetTraceParams(trace_id=bytes.fromhex(trace_id))]
            )
            (chunk,) = reader.GetTraces(request)
            assert len(chunk.resource_spans[0].scope_spans[0].spans) == 50

        figures = {
            "FindTraces: service + operation + attribute, last hour": median_ms(find),
            "GetTraces: one trace of 50 runs": median_ms(get),
        }
        channel.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="runspan-serve-bench-"))
    with contextlib.ExitStack() as stack:
        targets = {"SQLite": f"sqlite:///{folder / 'ingest.db'}"}
        if not args.skip_postgres:
            server = stack.enter_context(postgres_server.serving(args.postgres_url))
            targets["PostgreSQL"] = postgres_server.create_database(server)
        print(f"OTLP/gRPC ingest, 2 client processes, requests of 512 spans, {args.seconds:.0f} s")
        for name, url in targets.items():
            print(f"  {name:12s} {ingest_rate(url, args.seconds):10,.0f} spans/s")
        now_ns = time.time_ns()
        for name in targets:
            url = (
                f"sqlite:///{folder / 'history.db'}"
                if name == "SQLite"
                else postgres_server.create_database(server)
            )
            started = time.perf_counter()
            load_history(url, args.runs, now_ns)
            trace_id = add_big_trace(url, now_ns)
            print(f"\n{name}: {args.runs:,} runs loaded in {time.perf_counter() - started:.0f} s")
            for question, value in read_latency(url, trace_id, now_ns).items():
                print(f"  {question:58s} {value:8.1f} ms")


if __name__ == "__main__":
    main()

"""OTLP into ``runspan serve``: real exporters in other processes, over real sockets."""

from __future__ import annotations

import dataclasses
import gzip
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from runspan.storage import Run, RunStore
from tests.serve.conftest import Served, run_client
from tests.support import RUNSPAN

# An app in another process: a LangChain chain traced by runspan, stored in its own SQLite
# file and exported over OTLP to runspan serve.
_LANGCHAIN_APP = """
    import sys
    import runspan
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool
    from tests.support import UsageChatModel, run_agent

    local, endpoint, protocol = sys.argv[1:4]
    # Pointed at runspan serve, values go whole: its database is the history, not a preview.
    runspan.configure(
        database_url=local, otlp_endpoint=endpoint, otlp_protocol=protocol,
        service_name="worker-7", otlp_preview_chars=1_000_000,
    )
    handler = runspan.TracingCallbackHandler()

    @tool
    def forecast(city: str) -> str:
        "The forecast for a city."
        return f"{city}: 14C"

    chain = (
        RunnableLambda(lambda q: {"q": q, "weather": forecast.invoke({"city": "Oslo"})})
        | ChatPromptTemplate.from_messages(
            [("system", "You plan trips."), ("human", "{q} {weather}")]
        )
        | UsageChatModel()
        | StrOutputParser()
    )
    chain.invoke("Pack what?", config={"callbacks": [handler], "tags": ["trip"]})
    chain.invoke("Long: " + "rain " * 20_000, config={"callbacks": [handler]})
    try:
        RunnableLambda(lambda x: 1 / 0, name="divide").invoke(1, config={"callbacks": [handler]})
    except ZeroDivisionError:
        pass
    run_agent(handler)
    runspan.shutdown()
"""

# Any other OpenTelemetry SDK: no LangChain, no runspan.
_PLAIN_SDK_APP = """
    import sys
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    endpoint, protocol = sys.argv[1:3]
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": "billing"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("billing")
    with tracer.start_as_current_span("charge card", attributes={"amount": 12.5, "retries": 2,
            "card.kinds": ["visa", "debit"], "captured": True}) as outer:
        with tracer.start_as_current_span("call bank") as inner:
            inner.add_event("sent", {"bytes": 512})
            inner.set_status(Status(StatusCode.ERROR, "bank said no"))
    provider.shutdown()
"""


def _comparable(run: Run) -> dict[str, Any]:
    found = dataclasses.asdict(run)
    found.pop("children")
    return found


def _runs(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    with RunStore(url) as store:
        return {
            (run.trace_id, run.span_id): _comparable(run)
            for run in store.runs(limit=10_000, order="newest")
        }


def _names(url: str) -> list[str]:
    """Every stored span's name, however many."""
    engine = create_engine(url)
    with engine.connect() as connection:
        names = [row[0] for row in connection.execute(text("SELECT name FROM runs"))]
    engine.dispose()
    return names


def _endpoint(served: Served, protocol: str) -> str:
    return f"http://{served.grpc}" if protocol == "grpc" else served.http


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_run_traced_in_another_process_is_the_row_it_would_be_in_process(
    serve: Any, database_url: str, tmp_path: Path, protocol: str
) -> None:
    """A chain with a tool, a model, a parser, a failure, a 100,000-character input and a
    LangGraph agent, traced by runspan in another process and exported to runspan serve, is
    stored row for row as the app's own SQLite file has it: ids, parents, times, status,
    tokens, content (whole), events."""
    served = serve()
    local = f"sqlite:///{tmp_path / 'app.db'}"
    run_client(_LANGCHAIN_APP, local, _endpoint(served, protocol), protocol)
    in_process, ingested = _runs(local), _runs(database_url)
    assert len(in_process) >= 20
    assert ingested == in_process


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_of_any_opentelemetry_sdk_are_stored(
    serve: Any, database_url: str, protocol: str
) -> None:
    served = serve()
    run_client(_PLAIN_SDK_APP, _endpoint(served, protocol), protocol)
    runs = {run["name"]: run for run in _runs(database_url).values()}
    charge, bank = runs["charge card"], runs["call bank"]
    assert bank["parent_span_id"] == charge["span_id"]
    assert charge["service_name"] == "billing"
    assert charge["run_id"] is None
    assert charge["attributes"] == {
        "amount": 12.5,
        "retries": 2,
        "card.kinds": ["visa", "debit"],
        "captured": True,
    }
    assert (bank["status"], bank["error_message"]) == ("error", "bank said no")
    assert [event["name"] for event in bank["events"]] == ["sent"]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"{url}/v1/traces", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _json_request(spans: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]
                    },
                    "scopeSpans": [{"scope": {"name": "manual"}, "spans": spans}],
                }
            ]
        }
    ).encode()


def test_otlp_json_gzipped_with_partial_success(serve: Any, database_url: str) -> None:
    """OTLP/JSON as other languages' exporters send it (hex ids, enums as numbers, 64-bit
    times as strings), gzipped: the good span is stored, the one with a bad id is counted
    as rejected in the answer."""
    served = serve()
    trace_id = "5b8efff798038103d269b633813fc60c"
    good = {
        "traceId": trace_id,
        "spanId": "eee19b7ec3c1b174",
        "name": "render page",
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000250000000",
        "attributes": [{"key": "http.route", "value": {"stringValue": "/cart"}}],
        "status": {"code": 1},
    }
    bad = {**good, "spanId": "0000000000000000", "name": "no id"}
    status, headers, body = _post(
        served.http,
        gzip.compress(_json_request([good, bad])),
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["partialSuccess"]["rejectedSpans"] == "1"
    assert "span_id" in answer["partialSuccess"]["errorMessage"]
    (stored,) = _runs(database_url).values()
    assert (stored["trace_id"], stored["name"], stored["span_kind"]) == (
        trace_id,
        "render page",
        "server",
    )
    assert stored["duration_ms"] == 250.0
    assert stored["service_name"] == "js-app"


def test_bad_requests_are_refused_for_good(serve: Any) -> None:
    """Not retryable: a body that is not OTLP (400), another media type (415), a body that
    inflates past the limit (413)."""
    served = serve()
    status, _, _ = _post(
        served.http, b"not protobuf at all", {"Content-Type": "application/x-protobuf"}
    )
    assert status == 400
    status, _, _ = _post(served.http, b"{}", {"Content-Type": "text/plain"})
    assert status == 415
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    status, _, _ = _post(
        served.http,
        bomb,
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert status == 413


def test_a_token_is_required_when_set(serve: Any, database_url: str) -> None:
    served = serve("--token", "s3cret-token")
    status, _, _ = _post(served.http, _json_request([]), {"Content-Type": "application/json"})
    assert status == 401
    status, _, _ = _post(
        served.http,
        _json_request([]),
        {"Content-Type": "application/json", "Authorization": "Bearer wrong"},
    )
    assert status == 401
    refused = run_client(
        """
        import sys
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SpanExportResult

        provider = TracerProvider()
        span = provider.get_tracer("t").start_span("secret work")
        span.end()
        for headers in ((), (("authorization", "Bearer s3cret-token"),)):
            exporter = OTLPSpanExporter(endpoint=sys.argv[1], insecure=True, headers=headers)
            print(exporter.export([span]).name)
        """,
        f"http://{served.grpc}",
    )
    assert refused.stdout.split() == ["FAILURE", "SUCCESS"]
    assert "UNAUTHENTICATED" in refused.stderr
    assert [run["name"] for run in _runs(database_url).values()] == ["secret work"]


def test_no_token_no_listening_beyond_loopback(tmp_path: Path) -> None:
    """Refused before anything listens: every address, no token."""
    import subprocess

    done = subprocess.run(
        [
            str(RUNSPAN),
            "serve",
            "--host",
            "0.0.0.0",
            "--database-url",
            f"sqlite:///{tmp_path / 'x.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "--token" in done.stderr
    assert "--insecure-bind" in done.stderr


@pytest.mark.parametrize("taken", ["--grpc-port", "--http-port"])
def test_a_port_in_use_is_one_clear_error(tmp_path: Path, taken: str) -> None:
    import socket
    import subprocess

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--http-port" if taken == "--grpc-port" else "--grpc-port"
        database = f"sqlite:///{tmp_path / 'x.db'}"
        done = subprocess.run(
            [str(RUNSPAN), "serve", taken, str(port), other, "0", "--database-url", database],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert f"could not listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def _hold_the_database(url: str, seconds: float) -> threading.Thread:
    """Another client holding the runs table: the writer stalls until it lets go."""
    engine = create_engine(url)
    locked = threading.Event()

    def hold() -> None:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN EXCLUSIVE")
            else:
                connection.execute(text("BEGIN"))
                connection.execute(text("LOCK TABLE runs IN EXCLUSIVE MODE"))
            locked.set()
            time.sleep(seconds)
            connection.rollback()
        engine.dispose()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(30)
    return holder


_CONCURRENT_SENDERS = """
    import sys, threading
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    results = []

    def send(n):
        spans = []
        for i in range(50):
            span = provider.get_tracer("t").start_span(f"batch {n} span {i}")
            span.end()
            spans.append(span)
        exporter = OTLPSpanExporter(endpoint=sys.argv[1], insecure=True, timeout=20)
        results.append(exporter.export(spans).name)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(" ".join(sorted(results)))
"""


def test_a_stalled_writer_answers_busy_and_the_exporter_retries(
    serve: Any, database_url: str
) -> None:
    """With the database held by another client, requests beyond the one writing are told
    UNAVAILABLE (retryable), the exporters back off and send again, and once the database is
    free every span is stored, once."""
    served = serve("--max-waiting", "0")
    _runs(database_url)  # the schema exists
    holder = _hold_the_database(database_url, 4.0)
    done = run_client(_CONCURRENT_SENDERS, f"http://{served.grpc}")
    holder.join()
    assert done.stdout.split() == ["SUCCESS"] * 4
    assert "UNAVAILABLE" in done.stderr  # the exporters were told to retry, and did
    names = _names(database_url)
    assert len(names) == len(set(names)) == 200


_STEADY_SENDER = """
    import sys, time
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=sys.argv[1], insecure=True, timeout=2)
    deadline = time.monotonic() + float(sys.argv[2])
    n = 0
    while time.monotonic() < deadline:
        spans = []
        for i in range(20):
            span = provider.get_tracer("t").start_span(f"{n}-{i}")
            span.end()
            spans.append(span)
        if exporter.export(spans).name == "SUCCESS":
            print(n, flush=True)
        n += 1
"""


def test_sigterm_mid_ingest_loses_nothing_acknowledged(serve: Any, database_url: str) -> None:
    """A client sends batch after batch; SIGTERM arrives in the middle. runspan serve exits 0,
    and every batch it acknowledged is in the database, whole."""
    import subprocess
    import sys
    import textwrap

    served = serve()
    client = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_STEADY_SENDER), f"http://{served.grpc}", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(2.0)
    assert served.stop() == 0
    out, _ = client.communicate(timeout=20)
    acknowledged = [int(line) for line in out.split()]
    assert len(acknowledged) > 3
    stored = set(_names(database_url))
    for batch in acknowledged:
        assert {f"{batch}-{i}" for i in range(20)} <= stored, batch


def test_two_servers_on_one_postgresql_store_every_span_once(serve: Any, database_url: str) -> None:
    """How a team scales out: two runspan serve processes on one PostgreSQL, ingesting at
    once (the same spans sent to both as well), store every span exactly once."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several servers share a PostgreSQL database; SQLite is one process's")
    first, second = serve(), serve()
    sender = """
        import sys, threading
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider()
        batches = []
        for n in range(20):
            batch = []
            for i in range(25):
                span = provider.get_tracer("t").start_span(f"{n}-{i}")
                span.end()
                batch.append(span)
            batches.append(batch)
        results = []

        def send(endpoint, chosen):
            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=30)
            for batch in chosen:
                results.append(exporter.export(batch).name)

        # Each server gets half, and both get the last four batches.
        jobs = [(sys.argv[1], batches[:12]), (sys.argv[2], batches[8:])]
        threads = [threading.Thread(target=send, args=job) for job in jobs]
        for t in threads: t.start()
        for t in threads: t.join()
        print(" ".join(sorted(set(results))))
    """
    done = run_client(sender, f"http://{first.grpc}", f"http://{second.grpc}")
    assert done.stdout.split() == ["SUCCESS"]
    names = _names(database_url)
    assert len(names) == len(set(names)) == 500


def test_a_client_that_never_finishes_its_request_does_not_hold_the_stop(serve: Any) -> None:
    """A client sends a request's headers and never its body. SIGTERM still stops runspan serve
    after the grace period (not never), and it says which step held the stop up."""
    import socket

    served = serve()
    host, port = served.http.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as stalled:
        stalled.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 1000\r\n\r\n0123456789"
        )
        time.sleep(1.0)  # the request reaches the app, which waits for the rest
        assert served.stop() == 0, "".join(served.stderr)
    assert "stopping the HTTP server took" in "".join(served.stderr)


# runspan serve in this process's main thread; another thread takes the SIGTERM, as the kernel
# may hand a signal sent to the process to any of its threads.
_SIGTERM_TO_A_THREAD = """
    import signal, sys, threading, time
    from runspan.serve.server import ServeSettings, serve

    def stop_from_another_thread(listening):
        def send():
            time.sleep(1.0)  # the main thread is waiting for a stop by now
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        threading.Thread(target=send).start()

    serve(ServeSettings(database_url=sys.argv[1], grpc_port=0, http_port=0),
          ready=stop_from_another_thread)
    print("stopped")
"""


# The SIGTERM's handler runs while the main thread holds the lock of the event it waits on, as it
# can between any two bytecodes of Event.wait (seen a few times in CI: runspan serve never
# stopped, and printed nothing).
_SIGTERM_INSIDE_THE_WAIT = """
    import os, signal, sys, threading, time
    from runspan.serve import server

    class HeldWhenSignalled(threading.Event):
        def wait(self, timeout=None):
            if getattr(self, "ready", False) and not getattr(self, "sent", False):
                self.sent = True
                with self._cond:  # as Event.wait holds it
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.2)  # the handler runs here, in this thread, the lock held
            return super().wait(timeout)

    stopping = HeldWhenSignalled()
    server.threading = type(sys)("threading_for_serve")
    server.threading.__dict__.update(threading.__dict__, Event=lambda: stopping)

    def signal_once_waiting(listening):
        stopping.ready = True

    server.serve(server.ServeSettings(database_url=sys.argv[1], grpc_port=0, http_port=0),
                 ready=signal_once_waiting)
    print("stopped")
"""


def test_a_sigterm_while_the_main_thread_holds_the_stop_events_lock_stops_it(
    tmp_path: Path,
) -> None:
    done = run_client(_SIGTERM_INSIDE_THE_WAIT, f"sqlite:///{tmp_path / 'runs.db'}", timeout=30)
    assert done.stdout.split() == ["stopped"]


def test_a_sigterm_taken_by_another_thread_still_stops_it(tmp_path: Path) -> None:
    """The signal runs its handler in the main thread, which must not wait for it blind."""
    done = run_client(_SIGTERM_TO_A_THREAD, f"sqlite:///{tmp_path / 'runs.db'}", timeout=30)
    assert done.stdout.split() == ["stopped"]

"""``runspan serve`` as users run it: the real command in a process of its own, on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pytest
from langchain_core.runnables import RunnableLambda
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.storage import RunStore, StorageSpanProcessor
from tests.support import RUNSPAN, UsageChatModel, run_agent

_READY = re.compile(
    r"OTLP gRPC on (?P<host>[\d.]+):(?P<grpc>\d+).*?OTLP/HTTP on (?P<http>http://[\d.]+:\d+)/v1/traces"
)


@dataclass
class Served:
    """A running ``runspan serve``: its endpoints, and what it printed."""

    process: subprocess.Popen[str]
    grpc: str  # host:port
    http: str  # http://host:port
    stderr: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a service manager stops it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            # Past STUCK_STOP_SECONDS the server printed its threads' stacks: show them.
            self.process.kill()
            self.process.wait()
            if self.reader is not None:
                self.reader.join(10)
            raise AssertionError(
                f"runspan serve did not stop within {timeout} s: {''.join(self.stderr)}"
            ) from None
        if self.reader is not None:
            self.reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return status


def _drain(stream: IO[str], lines: list[str]) -> None:
    lines.extend(iter(stream.readline, ""))


def start_serve(database_url: str, *args: str, env: dict[str, str] | None = None) -> Served:
    process = subprocess.Popen(
        [str(RUNSPAN), "serve", "--grpc-port", "0", "--http-port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUNSPAN_DATABASE_URL": database_url, **(env or {})},
    )
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"runspan serve exited: {''.join(lines)}")
        lines.append(line)
        found = _READY.search(line)
        if found:
            # Keep reading stderr so that the server never blocks on a full pipe.
            reader = threading.Thread(target=_drain, args=(process.stderr, lines), daemon=True)
            reader.start()
            return Served(process, f"{found['host']}:{found['grpc']}", found["http"], lines, reader)
    process.kill()
    raise AssertionError(f"runspan serve did not start: {''.join(lines)}")


@pytest.fixture
def serve(database_url: str) -> Iterator[Any]:
    """Starts ``runspan serve`` on the test's database; every server stops at the end, and
    must stop cleanly."""
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None, url: str | None = None) -> Served:
        served = start_serve(url or database_url, *args, env=env)
        started.append(served)
        return served

    yield start
    for served in started:
        assert served.stop() == 0, "".join(served.stderr)


def run_client(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A Python program in a process of its own (an app that exports over OTLP)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert done.returncode == 0, done.stderr
    return done


def _provider(url: str, service: str) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), id_generator=RunIdGenerator()
    )
    provider.add_span_processor(StorageSpanProcessor(url))
    return provider


@pytest.fixture
def history(database_url: str) -> dict[str, Any]:
    """What the app stored: a ReAct agent, a chain with a 100,000-character input, a failed
    lambda, a trace of 1,200 spans, and a call from one service into another."""
    app = _provider(database_url, "travel-app")
    handler = TracingCallbackHandler(tracer_provider=app, max_value_chars=1_000_000)
    run_agent(handler)
    (RunnableLambda(lambda text: text[:10], name="trim") | UsageChatModel()).invoke(
        "rain " * 20_000, config={"callbacks": [handler]}
    )
    with pytest.raises(ZeroDivisionError):
        RunnableLambda(lambda x: 1 / 0, name="divide").invoke(1, config={"callbacks": [handler]})
    tracer = app.get_tracer("batch")
    with tracer.start_as_current_span("nightly batch"):
        for n in range(1199):
            tracer.start_span(f"item {n}").end()
    billing = _provider(database_url, "billing")
    with tracer.start_as_current_span("checkout") as checkout:
        context = trace.set_span_in_context(checkout)
        billing.get_tracer("billing").start_span("charge card", context=context).end()
    for provider in (app, billing):
        assert provider.force_flush()
        provider.shutdown()
    with RunStore(database_url) as store:
        runs = store.runs(limit=10_000, order="newest")
    return {"runs": runs}

"""Jaeger (an OTLP receiver) down for a stretch of runs, then back."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.cli import main
from runspan.exporters import OtlpSettings, OtlpSpanExporter, otlp_span_processor
from runspan.exporters.otlp import build_inner_exporter
from runspan.storage import RunStore, StorageSpanProcessor
from tests.exporters.conftest import Receiver
from tests.support import UsageChatModel


class ChainThreadWatch(SpanExporter):
    """Passes exports through, counting those made by the chain's thread while it runs."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.chain_running = threading.Event()
        self.on_chain_thread = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.chain_running.is_set() and threading.current_thread() is threading.main_thread():
            self.on_chain_thread += 1
        return self.inner.export(spans)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


@pytest.mark.logs_warnings
def test_runs_missed_while_jaeger_was_down_arrive_exactly_once_after_export(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 runs live, 200 with the receiver down, then live again. The chain's results never
    change and no export ever runs on the chain's thread while it runs; the outage is two log
    lines, the second naming the exact `runspan export` command; after it, the receiver holds
    every stored span exactly once."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    settings = OtlpSettings.build(receiver.endpoint, protocol=receiver.protocol, timeout=1)
    assert settings is not None
    watch = ChainThreadWatch(build_inner_exporter(settings))
    exporter = OtlpSpanExporter(settings, inner=watch, pauses=(0.05, 0.2))
    provider = TracerProvider(
        resource=Resource.create({"service.name": "outage-app"}), id_generator=RunIdGenerator()
    )
    provider.add_span_processor(StorageSpanProcessor(url))
    provider.add_span_processor(otlp_span_processor(settings, exporter=exporter))
    handler = TracingCallbackHandler(tracer_provider=provider)
    chain = (
        ChatPromptTemplate.from_template("{question}")
        | UsageChatModel()
        | StrOutputParser()
        | RunnableLambda(lambda answer: answer.upper(), name="shout")
    )

    def run(count: int) -> None:
        for n in range(count):
            watch.chain_running.set()
            result = chain.invoke({"question": f"q{n}"}, config={"callbacks": [handler]})
            watch.chain_running.clear()
            assert result == "FOUR"

    try:
        run(20)
        assert provider.force_flush()
        receiver.stop()
        run(200)
        provider.force_flush()
        receiver.start()
        for _ in range(100):  # until export works again (gRPC also backs off reconnecting)
            run(1)
            provider.force_flush()
            if not exporter.failing:
                break
            time.sleep(0.1)
        run(20)
        assert provider.force_flush()
    finally:
        provider.shutdown()

    assert watch.on_chain_thread == 0
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
    assert "failed" in lines[0]
    assert "works again" in lines[1]
    (command,) = re.findall(r"`(runspan export [^`]+)`", lines[1])

    args = [*command.split()[1:], "--database-url", url, "--protocol", receiver.protocol]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with RunStore(url) as store:
        stored = sorted(run.span_id for run in store.runs(limit=10_000))
    arrived = sorted(span.span_id for span in receiver.received.spans)
    assert len(stored) >= 240 * 5
    assert arrived == stored

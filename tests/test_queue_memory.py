"""The span queues' memory, bounded in bytes: the oldest waiting content is cut to previews
before any run is dropped, and what was cut or dropped is counted and logged once a minute."""

from __future__ import annotations

import gc
import logging
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanContext, TraceFlags

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.queue_memory import CUT_NOTE, QueueMemory, queue_memory
from runspan.storage import RunStore, StorageSpanProcessor
from tests.support import UsageChatModel

MIB = 1024 * 1024


def _span(n: int, **attributes: Any) -> ReadableSpan:
    return ReadableSpan(
        name=f"run {n}",
        context=SpanContext(7, n + 1, is_remote=False, trace_flags=TraceFlags(1)),
        resource=Resource.create({}),
        attributes=attributes,
        start_time=1,
        end_time=2,
    )


class TestBudget:
    def test_a_span_counts_once_while_a_queue_holds_it_and_not_after(self) -> None:
        memory = QueueMemory(MIB)
        span = _span(1, **{"input.value": "x" * 100_000})
        assert memory.admit(span)
        assert memory.admit(span)  # the other queue: the same bytes
        assert 100_000 < memory.held < 110_000
        del span
        gc.collect()
        assert memory.held == 0

    def test_over_the_budget_the_oldest_content_is_cut_first(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        memory = QueueMemory(MIB)
        waiting = [_span(n, **{"input.value": f"{n}" + "y" * 300_000}) for n in range(5)]
        assert all(memory.admit(span) for span in waiting)
        assert memory.held <= MIB
        assert memory.cut == 2
        assert memory.dropped == 0
        for span in waiting[:2]:  # the two oldest: a preview, and a marker saying why
            value = span.attributes["input.value"]
            assert len(value) < 5000
            assert value.endswith(f"[cut by runspan: 300,001 chars; {CUT_NOTE}]")
        for span in waiting[2:]:
            assert len(span.attributes["input.value"]) == 300_001
        (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert "over their memory budget" in line
        assert "RUNSPAN_MAX_QUEUE_BYTES" in line

    def test_a_run_is_dropped_only_when_every_waiting_span_is_cut(self) -> None:
        # Inputs of 4,000 characters: a preview keeps them whole, so cutting frees nothing.
        memory = QueueMemory(MIB)
        spans = [_span(n, **{"input.value": "z" * 4000}) for n in range(400)]
        admitted = 0
        while memory.admit(spans[admitted]):
            admitted += 1
        assert 150 < admitted < 400
        refused = spans[admitted]
        assert not memory.admit(refused)  # the other queue drops it too
        assert memory.dropped == 1
        assert memory.cut == 0
        assert memory.held <= MIB
        del spans[:admitted]
        gc.collect()
        assert memory.held == 0
        assert memory.admit(spans[1])  # room again once the queues let the others go

    @pytest.mark.parametrize("bad", [0, MIB - 1, 2.5e6, "64MiB", True])
    def test_a_bad_budget_is_refused_naming_the_setting(self, bad: Any) -> None:
        with pytest.raises(ValueError, match="max_queue_bytes"):
            QueueMemory(bad)

    @pytest.mark.parametrize("raw", ["64MiB", "-5", "1000", "1.5e9"])
    def test_a_bad_variable_is_refused_naming_it(self, raw: str) -> None:
        with pytest.raises(ValueError, match="RUNSPAN_MAX_QUEUE_BYTES"):
            queue_memory(None, {"RUNSPAN_MAX_QUEUE_BYTES": raw})

    def test_the_variable_and_the_default(self) -> None:
        assert queue_memory(None, {"RUNSPAN_MAX_QUEUE_BYTES": "2097152"}).limit == 2 * MIB
        assert queue_memory(None, {}).limit == 64 * MIB
        assert queue_memory(3 * MIB, {"RUNSPAN_MAX_QUEUE_BYTES": "2097152"}).limit == 3 * MIB


def test_a_slow_writer_with_1_mb_inputs_holds_the_budget_and_loses_no_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 invokes with a 1 MB input (about 4 MB of content each) while the writer is not
    writing: the queue holds at most its budget; when the writer writes, every run is stored,
    the newest whole and the oldest with previews that say why."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    memory = QueueMemory(4 * MIB)
    provider = TracerProvider(id_generator=RunIdGenerator())
    provider.add_span_processor(
        StorageSpanProcessor(url, schedule_delay_millis=600_000, memory=memory)
    )
    handler = TracingCallbackHandler(tracer_provider=provider, max_value_chars=2_000_000)
    chain = ChatPromptTemplate.from_template("{text}") | UsageChatModel() | StrOutputParser()
    tracemalloc.start()
    try:
        chain.invoke({"text": "warm"}, config={"callbacks": [handler]})
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20):
            big = f"{n:02d}" + "q" * 1_000_000
            chain.invoke({"text": big}, config={"callbacks": [handler]})
            assert memory.held <= memory.limit
            del big
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 3 * memory.limit, f"{retained:,} bytes kept for a budget of 4 MiB"
    assert memory.cut > 0
    assert memory.dropped == 0
    assert provider.force_flush()
    provider.shutdown()
    with RunStore(url) as store:
        roots = [run for run in store.runs(limit=100) if run.parent_run_id is None]
    assert len(roots) == 21
    by_text = {}
    for root in roots:
        text = str(root.inputs["text"])
        by_text[text[:2]] = text
    assert len(by_text["19"]) == 1_000_002  # the newest: whole
    assert by_text["00"].endswith(f"chars; {CUT_NOTE}]")  # the oldest: a preview
    assert any("over their memory budget" in r.getMessage() for r in caplog.records)


def test_the_writer_and_otlp_share_one_budget(tmp_path: Path) -> None:
    """``runspan.configure()``'s provider gives its SQL writer and its OTLP exporter one
    budget, so a span in both queues counts once."""
    from runspan.exporters import OtlpSettings
    from runspan.provider import build_provider

    settings = OtlpSettings.build("http://127.0.0.1:9", protocol="grpc", timeout=1)
    provider = build_provider(
        "svc",
        database_url=f"sqlite:///{tmp_path / 'runs.db'}",
        otlp=settings,
        memory=QueueMemory(2 * MIB),
    )
    try:
        processors = provider._active_span_processor._span_processors[0]._span_processors
        budgets = {id(processor.memory) for processor in processors}
        assert len(budgets) == 1
        assert processors[0].memory.limit == 2 * MIB
    finally:
        provider.shutdown()


def test_a_span_let_go_never_waits_for_the_budget_lock() -> None:
    """The writer's thread lets go of a whole batch at once: it must never queue up for the
    lock that the app's threads take per span (a convoy that stalled it until spans dropped)."""
    memory = QueueMemory(MIB)
    spans = [_span(n, **{"input.value": "x" * 100}) for n in range(10)]
    for span in spans:
        assert memory.admit(span)
    del span
    taken, done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with memory._lock:
            taken.set()
            done.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert taken.wait(10)
    letting_go = threading.Thread(target=spans.clear)  # every span's last reference
    letting_go.start()
    letting_go.join(5)
    finished = not letting_go.is_alive()
    done.set()
    holder.join(10)
    letting_go.join(10)
    assert finished
    assert memory.held == 0

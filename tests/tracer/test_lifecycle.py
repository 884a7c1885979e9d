"""A long-running process: the handler's state is released and memory does not grow."""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Sequence

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from runspan import RunIdGenerator, TracingCallbackHandler
from tests.support import fake_chat


class CountingExporter(SpanExporter):
    """Counts spans and keeps none, so that only runspan's own memory is measured."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def test_2500_invokes_leave_no_state_and_memory_flat() -> None:
    """After 2,500 invokes on one handler its state is empty, and the memory allocated by
    the last 2,000 of them is not more than noise."""
    exporter = CountingExporter()
    provider = TracerProvider(id_generator=RunIdGenerator(), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handler = TracingCallbackHandler(provider)
    chain = ChatPromptTemplate.from_template("{q}") | fake_chat() | StrOutputParser()
    config = {"callbacks": [handler]}

    for i in range(500):  # warm up LangChain's and Python's caches
        chain.invoke({"q": str(i)}, config=config)
    gc.collect()
    tracemalloc.start()
    try:
        first = tracemalloc.take_snapshot()
        for i in range(2000):
            chain.invoke({"q": str(i)}, config=config)
        gc.collect()
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert exporter.count == 2500 * 4
    assert handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}
    runspan_growth = sum(
        stat.size_diff
        for stat in second.compare_to(first, "filename")
        if "runspan" in stat.traceback[0].filename
    )
    total_growth = sum(stat.size_diff for stat in second.compare_to(first, "filename"))
    # 2,000 invokes that each held a few KB while running: a leak of even 100 bytes per
    # invoke would show as 200 KB, ten times the bound.
    assert runspan_growth < 20_000, runspan_growth
    assert total_growth < 200_000, total_growth
    provider.shutdown()


def test_live_traces_are_bounded() -> None:
    """Beyond max_live_traces open traces, the oldest is ended as unfinished, so a process
    whose runs never end keeps bounded state."""
    from uuid import uuid4

    from runspan.testing import SpanCapture

    capture = SpanCapture(max_live_traces=3)
    handler = capture.handler
    roots = [uuid4() for _ in range(5)]
    for root in roots:
        handler.on_chain_start({}, {}, run_id=root, name=f"root-{roots.index(root)}")
        handler.on_chain_start({}, {}, run_id=uuid4(), parent_run_id=root, name="child")
    assert handler.state_sizes()["traces"] == 3
    assert sorted(s.name for s in capture.spans) == ["child", "child", "root-0", "root-1"]
    for span in capture.spans:
        assert (span.attributes or {})["runspan.unfinished.reason"] == "expired"
    for root in roots:
        handler.on_chain_end({}, run_id=root)  # ends of expired roots are ignored
    assert handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}
    assert len(capture.spans) == 10
    # The contexts those runs were made current in are restored too (checked by conftest).
    capture.provider.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_child_can_trace_even_if_the_fork_caught_the_lock() -> None:
    """A fork while another thread is inside the handler leaves the child able to trace
    (the child gets a fresh lock instead of one held forever)."""
    import threading
    import time

    from langchain_core.runnables import RunnableLambda

    from runspan.testing import SpanCapture

    capture = SpanCapture()
    handler = capture.handler
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with handler._runs._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: trace one run and report through the exit code
        try:
            RunnableLambda(lambda x: x).invoke(1, config={"callbacks": [handler]})
            os._exit(0 if len(capture.spans) == 1 else 1)
        except BaseException:
            os._exit(2)
    release.set()
    holder.join()
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the handler's lock")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    capture.provider.shutdown()

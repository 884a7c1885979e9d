"""Spans made inside a run nest under it, and no context ever leaks.

The autouse fixture in conftest checks after every test that the thread's OpenTelemetry context
is exactly what it was before and that nothing was logged as a warning.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

import runspan
from runspan.testing import SpanCapture
from tests.support import assert_matches_langchain, fake_chat

PROMPT = ChatPromptTemplate.from_template("What is 1 + {number}?")


def _app_tracer(capture: SpanCapture) -> trace.Tracer:
    return capture.provider.get_tracer("app")


def _parent_name(capture: SpanCapture, span: ReadableSpan) -> str | None:
    if span.parent is None:
        return None
    for candidate in capture.spans:
        if candidate.context and candidate.context.span_id == span.parent.span_id:
            return candidate.name
    return "<not captured>"


def _app_spans(capture: SpanCapture) -> list[ReadableSpan]:
    return [
        s
        for s in capture.spans
        if s.instrumentation_scope and s.instrumentation_scope.name == "app"
    ]


def _assert_clean_next_invoke(capture: SpanCapture) -> None:
    capture.clear()
    RunnableLambda(lambda x: x).invoke(1, config={"callbacks": [capture.handler]})
    [root] = capture.tree()
    assert root.span.parent is None, "a later invoke was parented under a stale span"


class TestApplicationSpansNestUnderRuns:
    def test_inside_a_lambda_sync(self, capture: SpanCapture) -> None:
        """An application span opened inside a RunnableLambda has the lambda's span as
        parent and the same trace."""
        tracer = _app_tracer(capture)

        def work(x: int) -> int:
            with tracer.start_as_current_span("db.query"):
                return x + 1

        (RunnableLambda(work) | RunnableLambda(lambda x: x)).invoke(
            1, config={"callbacks": [capture.handler]}
        )
        [app] = _app_spans(capture)
        assert _parent_name(capture, app) == "work"
        assert app.context is not None
        assert app.context.trace_id == capture.span("work").context.trace_id  # type: ignore[union-attr]
        _assert_clean_next_invoke(capture)

    def test_inside_a_lambda_async(self, capture: SpanCapture) -> None:
        """The same on ainvoke."""
        tracer = _app_tracer(capture)

        async def work(x: int) -> int:
            with tracer.start_as_current_span("http.get"):
                await asyncio.sleep(0)
                return x + 1

        asyncio.run(
            (RunnableLambda(work) | RunnableLambda(lambda x: x)).ainvoke(
                1, config={"callbacks": [capture.handler]}
            )
        )
        [app] = _app_spans(capture)
        assert _parent_name(capture, app) == "work"
        _assert_clean_next_invoke(capture)

    @pytest.mark.parametrize("use_async", [False, True], ids=["batch", "abatch"])
    def test_inside_a_lambda_in_a_batch(self, capture: SpanCapture, use_async: bool) -> None:
        """In a batch every input's application span nests under its own lambda run."""
        tracer = _app_tracer(capture)

        def work(x: int) -> int:
            with tracer.start_as_current_span(f"app.{x}"):
                return x

        chain = RunnableLambda(lambda x: x) | RunnableLambda(work)
        config: Any = {"callbacks": [capture.handler], "max_concurrency": 4}
        inputs = list(range(12))
        if use_async:
            asyncio.run(chain.abatch(inputs, config=config))
        else:
            chain.batch(inputs, config=config)
        apps = _app_spans(capture)
        assert len(apps) == 12
        works = {s.context.span_id: s for s in capture.spans if s.name == "work" and s.context}
        for app in apps:
            assert app.parent is not None
            assert app.parent.span_id in works
            parent = works[app.parent.span_id]
            assert parent.attributes is not None
            assert parent.attributes["input.value"] == app.name.split(".")[1]
        _assert_clean_next_invoke(capture)

    def test_inside_a_tool(self, capture: SpanCapture) -> None:
        """An application span inside a tool nests under "execute_tool <tool>"."""
        tracer = _app_tracer(capture)

        @tool
        def lookup(city: str) -> str:
            """Look up the weather."""
            with tracer.start_as_current_span("weather.api"):
                return f"sunny in {city}"

        chain = RunnableLambda(lambda x: {"city": x}) | lookup
        assert chain.invoke("Oslo", config={"callbacks": [capture.handler]}) == "sunny in Oslo"
        [app] = _app_spans(capture)
        assert _parent_name(capture, app) == "execute_tool lookup"
        _assert_clean_next_invoke(capture)

    def test_inside_an_async_tool(self, capture: SpanCapture) -> None:
        """The same for a coroutine tool on the async path."""
        tracer = _app_tracer(capture)

        @tool
        async def alookup(city: str) -> str:
            """Look up the weather."""
            with tracer.start_as_current_span("weather.api"):
                await asyncio.sleep(0)
                return f"sunny in {city}"

        assert (
            asyncio.run(alookup.ainvoke({"city": "Oslo"}, config={"callbacks": [capture.handler]}))
            == "sunny in Oslo"
        )
        [app] = _app_spans(capture)
        assert _parent_name(capture, app) == "execute_tool alookup"

    def test_inside_a_retriever(self, capture: SpanCapture) -> None:
        """An application span inside a retriever nests under the retriever's span."""
        tracer = _app_tracer(capture)

        class VectorStoreRetriever(BaseRetriever):
            def _get_relevant_documents(
                self, query: str, *, run_manager: CallbackManagerForRetrieverRun
            ) -> list[Document]:
                with tracer.start_as_current_span("vector.search"):
                    return [Document(page_content=query)]

        (RunnableLambda(lambda x: x) | VectorStoreRetriever()).invoke(
            "q", config={"callbacks": [capture.handler]}
        )
        [app] = _app_spans(capture)
        assert _parent_name(capture, app) == "VectorStoreRetriever"

    def test_inside_a_lambda_run_in_a_thread(self, capture: SpanCapture) -> None:
        """Invokes from worker threads nest their application spans the same way."""
        tracer = _app_tracer(capture)

        def work(x: int) -> int:
            with tracer.start_as_current_span("app"):
                return x

        chain = RunnableLambda(lambda x: x) | RunnableLambda(work)
        threads = [
            threading.Thread(
                target=chain.invoke, args=(i,), kwargs={"config": {"callbacks": [capture.handler]}}
            )
            for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        apps = _app_spans(capture)
        assert len(apps) == 6
        assert {_parent_name(capture, a) for a in apps} == {"work"}


class TestRoots:
    def test_root_joins_the_applications_current_span(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """By default a root run is a child of the application's current span."""
        tracer = _app_tracer(capture)
        with tracer.start_as_current_span("http.request") as request:
            (PROMPT | fake_chat()).invoke(
                {"number": "2"}, config={"callbacks": [capture.handler, collector]}
            )
        outer = next(s for s in capture.spans if s.name == "http.request")
        assert_matches_langchain(capture, collector, outer=outer)
        root = capture.span("RunnableSequence")
        assert root.context is not None
        assert root.context.trace_id == request.get_span_context().trace_id

    def test_separate_trace_ignores_the_current_span(self) -> None:
        """separate_trace=True starts a new trace whatever the application has open."""
        capture = SpanCapture(separate_trace=True)
        with capture.provider.get_tracer("app").start_as_current_span("http.request"):
            (PROMPT | fake_chat()).invoke({"number": "2"}, config={"callbacks": [capture.handler]})
        root = capture.span("RunnableSequence")
        assert root.parent is None
        capture.provider.shutdown()

    def test_unknown_parent_gives_an_orphan_root(self, capture: SpanCapture) -> None:
        """A run whose parent runspan never saw becomes a root marked as an orphan."""
        from uuid import uuid4

        run_id, parent = uuid4(), uuid4()
        capture.handler.on_chain_start(
            {}, {"x": 1}, run_id=run_id, parent_run_id=parent, name="late"
        )
        capture.handler.on_chain_end({"y": 2}, run_id=run_id)
        span = capture.span("late")
        assert span.parent is None
        assert span.attributes is not None
        assert span.attributes["runspan.orphan"] is True
        assert span.attributes["langchain.parent_run_id"] == str(parent)

    def test_child_that_starts_after_its_parent_ended_still_links(
        self, capture: SpanCapture
    ) -> None:
        """A late child (its parent already ended, its trace still open) gets the right
        parent and trace."""
        from uuid import uuid4

        h = capture.handler
        root, parent, child = uuid4(), uuid4(), uuid4()
        h.on_chain_start({}, {}, run_id=root, name="root")
        h.on_chain_start({}, {}, run_id=parent, parent_run_id=root, name="parent")
        h.on_chain_end({}, run_id=parent)
        h.on_chain_start({}, {}, run_id=child, parent_run_id=parent, name="child")
        h.on_chain_end({}, run_id=child)
        h.on_chain_end({}, run_id=root)
        assert capture.render() == "root\n  parent\n    child"
        assert h.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}

    def test_callbacks_from_another_thread_keep_their_parent(self, capture: SpanCapture) -> None:
        """Parents come from parent_run_id, whatever thread or context the callback runs in."""
        from uuid import uuid4

        h = capture.handler
        root, child = uuid4(), uuid4()
        h.on_chain_start({}, {}, run_id=root, name="root")

        def in_thread() -> None:
            otel_context.attach(otel_context.Context())  # a thread with an unrelated context
            h.on_chain_start({}, {}, run_id=child, parent_run_id=root, name="child")
            h.on_chain_end({}, run_id=child)

        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()
        h.on_chain_end({}, run_id=root)
        assert capture.render() == "root\n  child"


class TestInstrument:
    @pytest.mark.usefixtures("fresh_globals")
    def test_traces_without_passing_callbacks(self, capture: SpanCapture) -> None:
        """After instrument(), chains are traced with no callbacks given, in any thread;
        after uninstrument() they are not."""
        handler = runspan.instrument(capture.handler)
        try:
            chain = PROMPT | fake_chat()
            chain.invoke({"number": "2"})
            worker = threading.Thread(target=chain.invoke, args=({"number": "3"},))
            worker.start()
            worker.join()
            asyncio.run(chain.ainvoke({"number": "4"}))
        finally:
            runspan.uninstrument()
        assert handler is capture.handler
        assert len(capture.tree()) == 3
        assert all(len(root.children) == 2 for root in capture.tree())
        capture.clear()
        chain.invoke({"number": "5"})
        assert capture.spans == []

    @pytest.mark.usefixtures("fresh_globals")
    def test_not_traced_twice_when_also_passed_explicitly(self, capture: SpanCapture) -> None:
        """A run that already carries a runspan handler is not given a second one."""
        runspan.instrument(capture.handler)
        try:
            other = SpanCapture()
            (PROMPT | fake_chat()).invoke({"number": "2"}, config={"callbacks": [other.handler]})
        finally:
            runspan.uninstrument()
        assert len(other.spans) == 3
        assert capture.spans == []
        other.provider.shutdown()


class TestCopying:
    def test_copies_are_the_same_handler(self, capture: SpanCapture) -> None:
        """LangChain copies handlers; every copy must be the handler itself."""
        import copy

        assert copy.copy(capture.handler) is capture.handler
        assert copy.deepcopy(capture.handler) is capture.handler


class TestAnyOrderOfCallbacks:
    def test_random_interleavings_restore_the_context(self) -> None:
        """Whatever order runs start and end in, with some ends never coming, once the rest
        have ended the context is what it was, the handler holds nothing, and every run's
        span has the parent LangChain gave it (or, started after its whole trace ended, is
        an orphan that names that parent)."""
        import random
        from uuid import UUID, uuid4

        rng = random.Random(20261124)
        for _ in range(200):
            capture = SpanCapture()
            handler = capture.handler
            before = otel_context.get_current()
            parents: dict[UUID, UUID | None] = {}
            open_runs: list[UUID] = []
            roots: list[UUID] = []
            for _step in range(rng.randint(1, 12)):
                if open_runs and rng.random() < 0.4:
                    run = open_runs.pop(rng.randrange(len(open_runs)))
                    if run in roots or rng.random() < 0.8:  # some children never end
                        handler.on_chain_end({}, run_id=run)
                    continue
                parent = rng.choice(open_runs) if open_runs and rng.random() < 0.7 else None
                run = uuid4()
                parents[run] = parent
                if parent is None:
                    roots.append(run)
                handler.on_chain_start({}, {}, run_id=run, parent_run_id=parent, name=str(run))
                open_runs.append(run)
            rng.shuffle(open_runs)
            for run in open_runs + roots:
                handler.on_chain_end({}, run_id=run)
            assert otel_context.get_current() is before
            assert handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}
            spans = {s.name: s for s in capture.spans}
            assert set(spans) == {str(run) for run in parents}
            for run, parent in parents.items():
                span = spans[str(run)]
                attributes = span.attributes or {}
                if parent is None:
                    assert span.parent is None
                elif attributes.get("runspan.orphan"):
                    assert span.parent is None
                    assert attributes["langchain.parent_run_id"] == str(parent)
                else:
                    assert span.parent is not None
                    assert span.parent.span_id == spans[str(parent)].context.span_id  # type: ignore[union-attr]
            capture.provider.shutdown()

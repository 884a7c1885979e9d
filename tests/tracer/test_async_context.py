"""The coroutine that awaits a run gets its own context back, and spans opened after an await
inside a run nest under that run.

LangChain fires the end of an async chain, model or retriever run in a new task with a copy of
the caller's context, so these tests look at the context inside the awaiting coroutine, right
after each ``await``: that is where a web framework's next span (an ASGI ``http send``, an httpx
call) is parented. The autouse fixture in conftest also fails any test that logs
"Failed to detach context".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from runspan.testing import SpanCapture
from tests.support import fake_chat

PROMPT = ChatPromptTemplate.from_template("What is 1 + {number}?")


class State(TypedDict):
    n: int


def _parent(capture: SpanCapture, span: ReadableSpan) -> ReadableSpan | None:
    if span.parent is None:
        return None
    found = [s for s in capture.spans if s.context and s.context.span_id == span.parent.span_id]
    return found[0] if found else None


def _parent_name(capture: SpanCapture, name: str) -> str | None:
    parent = _parent(capture, capture.span(name))
    return None if parent is None else parent.name


class _Docs(BaseRetriever):
    """A retriever with a real async path, which awaits before answering."""

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [Document(page_content=f"about {query}")]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        await asyncio.sleep(0)
        return [Document(page_content=f"about {query}")]


async def _think(state: State) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"n": state["n"] + 1}


def _graph(node: Callable[[State], Awaitable[dict[str, int]]] = _think) -> Any:
    """A compiled graph of one async node."""
    graph = StateGraph(State)
    graph.add_node(node.__name__, node)
    graph.add_edge(START, node.__name__)
    graph.add_edge(node.__name__, END)
    return graph.compile()


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


def _async_paths(handler: Any) -> dict[str, Callable[[], Awaitable[object]]]:
    """Each async way of running something, with the handler attached."""
    config: Any = {"callbacks": [handler]}
    chain = PROMPT | fake_chat() | StrOutputParser()

    @tool
    async def lookup(city: str) -> str:
        """Look up the weather."""
        await asyncio.sleep(0)
        return f"sunny in {city}"

    async def failing(x: int) -> int:
        await asyncio.sleep(0)
        raise ValueError("no")

    async def failed() -> None:
        with pytest.raises(ValueError, match="no"):
            await RunnableLambda(failing).ainvoke(1, config=config)

    async def timed_out() -> None:
        async def slow(x: int) -> int:
            await asyncio.sleep(30)
            return x

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await RunnableLambda(slow).ainvoke(1, config=config)

    return {
        "ainvoke": lambda: chain.ainvoke({"number": "2"}, config=config),
        "chat model ainvoke": lambda: fake_chat().ainvoke("hi", config=config),
        "astream": lambda: _drain(chain.astream({"number": "2"}, config=config)),
        "chat model astream": lambda: _drain(fake_chat().astream("hi", config=config)),
        "abatch": lambda: chain.abatch([{"number": "2"}, {"number": "3"}], config=config),
        "astream_events": lambda: _drain(
            chain.astream_events({"number": "2"}, config=config, version="v2")
        ),
        "parallel": lambda: RunnableParallel(a=chain, b=chain).ainvoke(
            {"number": "2"}, config=config
        ),
        "langgraph ainvoke": lambda: _graph().ainvoke({"n": 1}, config=config),
        "langgraph astream": lambda: _drain(_graph().astream({"n": 1}, config=config)),
        "async tool": lambda: lookup.ainvoke({"city": "Oslo"}, config=config),
        "retriever": lambda: _Docs().ainvoke("otters", config=config),
        "error": failed,
        "cancelled by a timeout": timed_out,
    }


PATHS = list(_async_paths(None))


class TestAwaitingCoroutineKeepsItsContext:
    @pytest.mark.parametrize("path", PATHS)
    def test_current_span_after_the_await(self, capture: SpanCapture, path: str) -> None:
        """After awaiting a runnable, the awaiting coroutine's current span is the one it had
        before, twice in a row, and the runs were traced under it."""
        tracer = capture.provider.get_tracer("app")
        run = _async_paths(capture.handler)[path]

        async def endpoint() -> None:
            with tracer.start_as_current_span("request") as request:
                await run()
                assert trace.get_current_span() is request
                await run()
                assert trace.get_current_span() is request
                with tracer.start_as_current_span("http send"):
                    pass
            assert trace.get_current_span() is trace.INVALID_SPAN

        asyncio.run(endpoint())
        assert _parent_name(capture, "http send") == "request"
        request = capture.span("request")
        traced = [s for s in capture.spans if s.name not in ("request", "http send")]
        assert traced, "nothing was traced"
        assert all(s.context.trace_id == request.context.trace_id for s in traced)  # type: ignore[union-attr]

    @pytest.mark.parametrize("path", ["astream", "astream_events", "langgraph astream"])
    def test_current_span_inside_the_loop_over_a_stream(
        self, capture: SpanCapture, path: str
    ) -> None:
        """While the app iterates a stream, its loop body keeps the app's current span: a
        stream's run, whose end may never come, is never made current there."""
        tracer = capture.provider.get_tracer("app")
        config: Any = {"callbacks": [capture.handler]}
        streams = {
            "astream": lambda: (PROMPT | fake_chat()).astream({"number": "2"}, config=config),
            "astream_events": lambda: (PROMPT | fake_chat()).astream_events(
                {"number": "2"}, config=config, version="v2"
            ),
            "langgraph astream": lambda: _graph().astream({"n": 1}, config=config),
        }

        async def endpoint() -> int:
            chunks = 0
            with tracer.start_as_current_span("request") as request:
                async for _ in streams[path]():
                    assert trace.get_current_span() is request
                    chunks += 1
                assert trace.get_current_span() is request
            return chunks

        assert asyncio.run(endpoint()) > 0

    def test_fifty_concurrent_requests(self, capture: SpanCapture) -> None:
        """Fifty requests in flight at once: each keeps its own span after every await, and each
        application span opened after an await in a lambda nests under its own lambda run."""
        tracer = capture.provider.get_tracer("app")
        model = fake_chat()

        async def work(x: str) -> str:
            await model.ainvoke(x)
            await asyncio.sleep(0)
            with tracer.start_as_current_span(f"db.{x}"):
                await asyncio.sleep(0)
            return x

        chain = RunnableLambda(lambda x: x) | RunnableLambda(work)

        async def endpoint(i: int) -> None:
            with tracer.start_as_current_span(f"request.{i}") as request:
                for _ in range(3):
                    await chain.ainvoke(str(i), config={"callbacks": [capture.handler]})
                    assert trace.get_current_span() is request

        async def serve() -> None:
            await asyncio.gather(*(endpoint(i) for i in range(50)))

        asyncio.run(serve())
        for i in range(50):
            request = capture.span(f"request.{i}")
            dbs = [s for s in capture.spans if s.name == f"db.{i}"]
            assert len(dbs) == 3
            for db in dbs:
                parent = _parent(capture, db)
                assert parent is not None
                assert parent.name == "work"
                assert parent.attributes is not None
                assert json.loads(str(parent.attributes["input.value"])) == str(i)
                assert db.context.trace_id == request.context.trace_id  # type: ignore[union-attr]


class TestSpansOpenedAfterAnAwait:
    def test_in_an_async_lambda(self, capture: SpanCapture) -> None:
        """A lambda that awaits a model and then calls out: the call nests under the lambda,
        not under the ended model run."""
        tracer = capture.provider.get_tracer("app")
        model = fake_chat()

        async def answer(question: str) -> str:
            reply = await model.ainvoke(question)
            with tracer.start_as_current_span("http.post"):
                await asyncio.sleep(0)
            return str(reply.content)

        asyncio.run(RunnableLambda(answer).ainvoke("hi", config={"callbacks": [capture.handler]}))
        assert _parent_name(capture, "http.post") == "answer"

    def test_in_an_async_tool(self, capture: SpanCapture) -> None:
        """The same in a coroutine tool that awaits a chain first."""
        tracer = capture.provider.get_tracer("app")
        chain = PROMPT | fake_chat()

        @tool
        async def research(topic: str) -> str:
            """Research a topic."""
            await chain.ainvoke({"number": topic})
            with tracer.start_as_current_span("search.api"):
                await asyncio.sleep(0)
            return "done"

        asyncio.run(research.ainvoke({"topic": "2"}, config={"callbacks": [capture.handler]}))
        assert _parent_name(capture, "search.api") == "execute_tool research"

    def test_in_a_langgraph_node(self, capture: SpanCapture) -> None:
        """The same in an async LangGraph node that awaits a model."""
        tracer = capture.provider.get_tracer("app")
        model = fake_chat()

        async def agent(state: State) -> dict[str, int]:
            await model.ainvoke("hi")
            with tracer.start_as_current_span("vector.search"):
                await asyncio.sleep(0)
            return {"n": state["n"] + 1}

        asyncio.run(_graph(agent).ainvoke({"n": 1}, config={"callbacks": [capture.handler]}))
        assert _parent_name(capture, "vector.search") == "agent"

    def test_in_an_async_retriever(self, capture: SpanCapture) -> None:
        """The same in a retriever whose async path awaits a model before searching."""
        tracer = capture.provider.get_tracer("app")
        model = fake_chat()

        class Rewriting(BaseRetriever):
            def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
                raise NotImplementedError

            async def _aget_relevant_documents(
                self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
            ) -> list[Document]:
                await model.ainvoke(query, config={"callbacks": run_manager.get_child()})
                with tracer.start_as_current_span("index.query"):
                    await asyncio.sleep(0)
                return [Document(page_content=query)]

        asyncio.run(Rewriting().ainvoke("otters", config={"callbacks": [capture.handler]}))
        assert _parent_name(capture, "index.query") == "Rewriting"

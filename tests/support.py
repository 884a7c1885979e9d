"""Offline models, a retriever, LangGraph graphs with their corners, and the check that spans
match LangChain's own run tree."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import operator
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, TypedDict

import jsonschema
from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_core.tracers.schemas import Run
from opentelemetry.sdk.trace import ReadableSpan

from runspan.testing import SpanCapture


def fake_chat(text: str = "three apples", **message_fields: Any) -> GenericFakeChatModel:
    """langchain-core's offline chat model, answering ``text`` forever."""
    return GenericFakeChatModel(
        messages=itertools.repeat(AIMessage(content=text, **message_fields))
    )


class UsageChatModel(BaseChatModel):
    """A chat model that reports token usage in one of the shapes real providers use."""

    shape: str = "usage_metadata"
    model: str = "gpt-test"
    temperature: float | None = 0.2
    max_tokens: int | None = 64
    reply: str = "four"

    @property
    def _llm_type(self) -> str:
        return "usage-test"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openai"
        return params

    def _result(self) -> tuple[AIMessage, dict[str, Any] | None, dict[str, Any]]:
        llm_output: dict[str, Any] | None = None
        metadata: dict[str, Any] = {
            "model_name": f"{self.model}-2025",
            "id": "resp-123",
            "finish_reason": "stop",
        }
        fields: dict[str, Any] = {}
        if self.shape == "usage_metadata":
            fields["usage_metadata"] = {
                "input_tokens": 11,
                "output_tokens": 7,
                "total_tokens": 18,
                "input_token_details": {"cache_read": 3, "cache_creation": 2},
                "output_token_details": {"reasoning": 5},
            }
        elif self.shape == "openai_llm_output":
            llm_output = {
                "token_usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": 7,
                    "total_tokens": 18,
                    "prompt_tokens_details": {"cached_tokens": 3},
                    "completion_tokens_details": {"reasoning_tokens": 5},
                },
                "model_name": f"{self.model}-2025",
            }
        elif self.shape == "anthropic_llm_output":
            llm_output = {
                "usage": {
                    "input_tokens": 11,
                    "output_tokens": 7,
                    "cache_read_input_tokens": 3,
                    "cache_creation_input_tokens": 2,
                }
            }
        elif self.shape == "response_metadata":
            metadata["token_usage"] = {"prompt_tokens": 11, "completion_tokens": 7}
        elif self.shape != "none":
            raise ValueError(self.shape)
        return (
            AIMessage(content=self.reply, response_metadata=metadata, **fields),
            llm_output,
            metadata,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message, llm_output, _ = self._result()
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=llm_output)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message, _, metadata = self._result()
        words = str(message.content).split(" ")
        for index, word in enumerate(words):
            last = index == len(words) - 1
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(
                    content=word,
                    usage_metadata=message.usage_metadata if last else None,
                    response_metadata=metadata if last else {},
                )
            )
            if run_manager:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk


class ToolCallingChatModel(BaseChatModel):
    """Answers every prompt with one call of the ``add`` tool."""

    @property
    def _llm_type(self) -> str:
        return "tool-calling-test"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "call_abc123", "type": "tool_call"}
        message = AIMessage(content="", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=message)])


class FruitRetriever(BaseRetriever):
    """Finds fruit facts by a word of the query."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        facts = ["apples are red", "bananas are yellow", "apples grow on trees"]
        words = query.lower().split()
        return [
            Document(page_content=f, metadata={"source": "facts"})
            for f in facts
            if any(w in f for w in words)
        ]


def all_runs(collector: RunCollectorCallbackHandler) -> list[Run]:
    runs: list[Run] = []

    def add(run: Run) -> None:
        runs.append(run)
        for child in run.child_runs:
            add(child)

    for root in collector.traced_runs:
        add(root)
    return runs


def spans_by_run_id(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {
        str(s.attributes["langchain.run_id"]): s
        for s in spans
        if s.attributes and "langchain.run_id" in s.attributes
    }


def assert_matches_langchain(
    capture: SpanCapture,
    collector: RunCollectorCallbackHandler,
    *,
    outer: ReadableSpan | None = None,
) -> list[ReadableSpan]:
    """The spans are LangChain's run tree: one per run, same parents, one trace per root,
    every child inside its parent's time. Returns the root spans."""
    runs = all_runs(collector)
    run_spans = spans_by_run_id(capture.spans)
    assert len(runs) > 0
    assert len(run_spans) == len(runs), (len(run_spans), len(runs))
    assert {str(r.id) for r in runs} == set(run_spans)
    roots = []
    for run in runs:
        span = run_spans[str(run.id)]
        assert span.context is not None
        assert span.end_time is not None
        assert span.start_time is not None
        assert span.start_time <= span.end_time
        if run.parent_run_id is None:
            roots.append(span)
            if outer is None:
                assert span.parent is None, span.name
            else:
                assert outer.context is not None
                assert span.parent is not None
                assert span.parent.span_id == outer.context.span_id
            continue
        parent = run_spans[str(run.parent_run_id)]
        assert parent.context is not None
        assert span.parent is not None, span.name
        assert span.parent.span_id == parent.context.span_id, (span.name, parent.name)
        assert span.context.trace_id == parent.context.trace_id
        assert span.attributes is not None
        assert span.attributes["langchain.parent_run_id"] == str(run.parent_run_id)
        assert parent.start_time is not None
        assert parent.end_time is not None
        assert parent.start_time <= span.start_time
        assert span.end_time <= parent.end_time
    if outer is None:
        assert len({r.context.trace_id for r in roots if r.context}) == len(roots)
    return roots


class GraphState(TypedDict):
    n: int
    items: Annotated[list[int], operator.add]


def corner_graph(fail_times: int = 2) -> Any:
    """A LangGraph graph with every corner users meet: a node that fails ``fail_times`` times
    and succeeds under a RetryPolicy, a lambda as a conditional edge (a run LangChain calls
    ``Unnamed``), a subgraph, and a ``Send`` fan-out."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import RetryPolicy, Send

    failures = {"left": fail_times}

    def flaky(state: GraphState) -> dict[str, int]:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("the search service is busy")
        return {"n": state["n"] + 1}

    inner = StateGraph(GraphState)
    inner.add_node("summarize", lambda state: {"n": state["n"] * 10})
    inner.add_edge(START, "summarize")
    inner.add_edge("summarize", END)

    graph = StateGraph(GraphState)
    retry = RetryPolicy(max_attempts=3, initial_interval=0.001, jitter=False)
    graph.add_node("search", flaky, retry_policy=retry)
    graph.add_node("digest", inner.compile())
    graph.add_node("work", lambda state: {"items": [state["n"]]})
    graph.add_edge(START, "search")
    graph.add_conditional_edges("search", lambda state: "digest", ["digest"])
    graph.add_conditional_edges(
        "digest", lambda state: [Send("work", {"n": i, "items": []}) for i in range(2)], ["work"]
    )
    graph.add_edge("work", END)
    return graph.compile()


def interrupting_graph() -> Any:
    """A graph with a checkpointer whose node asks a human (``interrupt()``) before going on."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    def approve(state: GraphState) -> dict[str, int]:
        answer = interrupt("approve the refund?")
        return {"n": int(answer)}

    graph = StateGraph(GraphState)
    graph.add_node("approve", approve)
    graph.add_edge(START, "approve")
    graph.add_edge("approve", END)
    return graph.compile(checkpointer=InMemorySaver())


def run_langgraph_corners(*handlers: Any, thread_id: str = "refund-42") -> None:
    """The corner graph, an interrupted invocation and the one that resumes it, one left
    waiting, and a run cancelled mid-way: rows for every status and reason the docs' queries
    ask about."""
    from langgraph.types import Command

    config: Any = {"callbacks": list(handlers)}
    corner_graph().invoke({"n": 1, "items": []}, config=config)
    approvals = interrupting_graph()
    thread = {**config, "configurable": {"thread_id": thread_id}}
    approvals.invoke({"n": 0, "items": []}, config=thread)
    approvals.invoke(Command(resume="7"), config=thread)
    waiting = {**config, "configurable": {"thread_id": f"{thread_id}-waiting"}}
    approvals.invoke({"n": 1, "items": []}, config=waiting)  # never resumed

    async def cancelled() -> None:
        async def wait(x: int) -> int:
            await asyncio.sleep(30)
            return x

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.01):
                await RunnableLambda(wait, name="wait_for_approval").ainvoke(1, config=config)

    asyncio.run(cancelled())


class ScriptedAgentModel(BaseChatModel):
    """A chat model that calls two tools at once, then answers from their results."""

    @property
    def _llm_type(self) -> str:
        return "scripted-agent"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        offered = [
            {"type": "function", "function": {"name": t.name, "description": t.description}}
            for t in tools
        ]
        return self.bind(tools=offered)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if not any(message.type == "tool" for message in messages):
            calls = [
                {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_w1"},
                {"name": "get_time", "args": {"city": "Oslo"}, "id": "call_t1"},
            ]
            usage = {"input_tokens": 52, "output_tokens": 18, "total_tokens": 70}
            message = AIMessage(content="", tool_calls=calls, usage_metadata=usage)  # type: ignore[arg-type]
        else:
            usage = {"input_tokens": 96, "output_tokens": 14, "total_tokens": 110}
            message = AIMessage(
                content="In Oslo it is 14:05, sunny and 21C.",
                usage_metadata=usage,  # type: ignore[arg-type]
            )
        return ChatResult(generations=[ChatGeneration(message=message)])


def run_agent(*handlers: Any) -> str:
    """A LangGraph ReAct agent that calls two tools, then answers; returns the answer."""
    from langchain_core.tools import tool
    from langgraph.prebuilt import create_react_agent

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny and 21C in {city}"

    @tool
    def get_time(city: str) -> str:
        """The local time in a city."""
        return f"14:05 in {city}"

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent moved in LangGraph 1.x
        agent = create_react_agent(
            ScriptedAgentModel(), [get_weather, get_time], prompt="You are a travel assistant."
        )
    state = agent.invoke(
        {"messages": [("human", "Weather and time in Oslo?")]},
        config={"callbacks": list(handlers)},
    )
    return str(state["messages"][-1].content)


RUNSPAN = Path(sys.executable).parent / "runspan"


def runspan_cli(
    url: str, *args: str, columns: int = 200, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The runspan command against the database at ``url``, as a user runs it: a subprocess,
    in a terminal ``columns`` wide (its output is piped, so rich does not draw for a tty)."""
    return subprocess.run(
        [str(RUNSPAN), *args, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": str(columns), **(env or {})},
    )


# --- OpenTelemetry GenAI content: the conventions' JSON schemas ------------------------------

_SCHEMAS = Path(__file__).parent / "genai_schemas"
_ATTRIBUTE_SCHEMAS = {
    "gen_ai.input.messages": "input_messages.json",
    "gen_ai.output.messages": "output_messages.json",
    "gen_ai.system_instructions": "system_instructions.json",
    "gen_ai.tool.definitions": "tool_definitions.json",
    "gen_ai.retrieval.documents": "retrieval_documents.json",
}
# Part types runspan writes: the schemas accept any typed part (a generic one), so the tests
# also hold runspan to the conventions' named parts and the generic parts it documents.
_KNOWN_PARTS = {"text", "reasoning", "tool_call", "tool_call_response", "uri", "file"}
_GENERIC_MEDIA = {"image", "audio", "video", "document"}
CONTENT_ATTRIBUTES = (
    *_ATTRIBUTE_SCHEMAS,
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.retrieval.query.text",
    "input.value",
    "output.value",
)


def validated(attributes: Any, name: str) -> Any:
    """The attribute's JSON, after checking it against its schema."""
    value = json.loads(str(attributes[name]))
    schema = json.loads((_SCHEMAS / _ATTRIBUTE_SCHEMAS[name]).read_text())
    jsonschema.validate(value, schema)
    if name in ("gen_ai.input.messages", "gen_ai.output.messages"):
        for message in value:
            for part in message["parts"]:
                assert part["type"] in _KNOWN_PARTS | _GENERIC_MEDIA, part
    return value


class AppTurns:
    """Counts how many times this thread (the app's) gets the interpreter back while some work
    runs on another thread: :attr:`count` grows live, so the work can read it as it goes.

    The switch interval is a minute meanwhile, so the interpreter never forces a switch: this
    thread runs only where the work gives the GIL up (a pause, a blocking call).
    """

    def __init__(self) -> None:
        self.count = 0

    def during(self, work: Callable[[], object]) -> int:
        done = threading.Event()

        def run() -> None:
            try:
                work()
            finally:
                done.set()

        before = sys.getswitchinterval()
        sys.setswitchinterval(60)
        try:
            worker = threading.Thread(target=run)
            worker.start()
            while not done.wait(0.0001):  # waits without the GIL, and needs it back to return
                self.count += 1
            worker.join()
        finally:
            sys.setswitchinterval(before)
        return self.count


def app_turns_during(work: Callable[[], object]) -> int:
    """How often this thread got the interpreter back while ``work`` ran (:class:`AppTurns`)."""
    return AppTurns().during(work)

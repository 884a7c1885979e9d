"""One vocabulary: every attribute the tracer writes survives span → row → rebuilt span.

Real runnables produce spans carrying every attribute name in ``runspan.attributes``; the SQL
writer stores them (SQLite and PostgreSQL), the store reads them back, and replay rebuilds the
spans. Nothing may be lost or renamed on the way, and a name added to the vocabulary without a
run here that writes it fails the test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
import tenacity
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

from runspan import attributes
from runspan.storage import RunStore, SqlSpanExporter
from runspan.storage.rebuild import stored_span
from runspan.testing import SpanCapture
from tests.support import FruitRetriever, UsageChatModel, run_agent, run_langgraph_corners

# Names that no span of runspan's carries as an attribute: event names, values, metadata keys
# LangGraph writes, and a name only read from other instrumentations.
_NOT_SPAN_ATTRIBUTES = {
    "EXCEPTION_EVENT",
    "FIRST_CHUNK_EVENT",
    "CONTROL_FLOW_EVENT",
    "JSON_MIME",
    "TEXT_MIME",
    "SERVICE_NAME",
    "NODE_KEY",
    "TASK_KEY",
    "THREAD_KEY",
    "LEGACY_PROVIDER",
}
# Written on span events rather than on spans.
_ON_EVENTS = {
    "EXCEPTION_TYPE",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_STACKTRACE",
    "EXCEPTION_ESCAPED",
    "RETRY_ATTEMPT",
}
_JSON_TEXT = {
    attributes.METADATA,
    attributes.INPUT_VALUE,
    attributes.OUTPUT_VALUE,
    attributes.INPUT_MESSAGES,
    attributes.OUTPUT_MESSAGES,
    attributes.SYSTEM_INSTRUCTIONS,
    attributes.TOOL_DEFINITIONS,
    attributes.TOOL_CALL_ARGUMENTS,
    attributes.TOOL_CALL_RESULT,
    attributes.RETRIEVAL_DOCUMENTS,
}


class AllParametersChatModel(UsageChatModel):
    """A chat model whose invocation parameters fill every gen_ai.request.* attribute."""

    top_p: float = 0.9
    top_k: int = 40
    seed: int = 7
    frequency_penalty: float = 0.1
    presence_penalty: float = 0.2

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # What LangChain reports as the call's invocation parameters.
        names = ("model", "top_p", "top_k", "seed", "frequency_penalty", "presence_penalty")
        return {name: getattr(self, name) for name in names}


def _vocabulary() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(attributes).items()
        if name.isupper() and isinstance(value, str)
    }


def _every_kind_of_run(capture: SpanCapture) -> None:
    """Runs that between them write every attribute of the vocabulary."""
    handler = capture.handler
    config: Any = {"callbacks": [handler], "tags": ["team:x"], "metadata": {"user": "ann"}}
    model = AllParametersChatModel()
    (ChatPromptTemplate.from_template("count {x}") | model).invoke({"x": "apples"}, config=config)
    model.invoke("count pears", config=config, stop=["\n\n"])
    offered = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    model.bind(tools=[offered]).invoke("add 1 and 2", config=config)
    for _ in AllParametersChatModel(shape="usage_metadata").stream("hi", config=config):
        pass

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    add.invoke(
        {"name": "add", "args": {"a": 1, "b": 2}, "id": "call_1", "type": "tool_call"},
        config=config,
    )
    FruitRetriever().invoke("apples", config=config)

    def note_a_handled_error(x: int) -> int:
        trace.get_current_span().record_exception(ValueError("handled"), escaped=False)
        return x

    RunnableLambda(note_a_handled_error).invoke(1, config=config)

    def retried_call(x: int, run_manager: Any) -> int:
        # As LangChain's model retry decorators report a retry: tenacity's own call state.
        state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = 1
        state.outcome = tenacity.Future.construct(1, ConnectionError("busy"), True)
        run_manager.on_retry(state)
        return x

    RunnableLambda(retried_call).invoke(1, config=config)
    with pytest.raises(KeyError):
        RunnableLambda(lambda x: {}[x], name="lookup").invoke("k", config=config)
    run_langgraph_corners(handler)
    run_agent(handler)  # an agent: invoke_agent with its name, tools offered and called
    turn = {"callbacks": [handler], "metadata": {"session_id": "conv-1", "user_id": "ann"}}
    (RunnableLambda(lambda x: x, name="turn") | RunnableLambda(lambda x: x)).invoke(1, turn)
    from uuid import uuid4

    orphan = uuid4()
    handler.on_chain_start({}, {"q": 1}, run_id=orphan, parent_run_id=uuid4(), name="orphan")
    handler.on_chain_end({"a": 2}, run_id=orphan)

    async def abandoned_step() -> None:
        stream = (RunnableLambda(lambda x: x) | RunnableLambda(lambda x: x)).astream(
            1, config=config
        )
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(abandoned_step())


def _comparable(name: str, value: Any) -> Any:
    if name in _JSON_TEXT and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _normalized(found: Mapping[str, Any] | None) -> dict[str, Any]:
    return {name: _comparable(name, value) for name, value in (found or {}).items()}


def test_every_attribute_survives_span_row_and_rebuilt_span(database_url: str) -> None:
    """Each span's attributes and events, rebuilt from its stored row, equal the tracer's, and
    between them the spans carry every name of the vocabulary."""
    capture = SpanCapture()
    _every_kind_of_run(capture)
    spans: list[ReadableSpan] = [s for s in capture.spans if s.end_time is not None]
    capture.provider.shutdown()
    exporter = SqlSpanExporter(database_url)
    exporter.export(spans)
    exporter.shutdown()

    written = {key for span in spans for key in (span.attributes or {})}
    on_events = {key for span in spans for event in span.events for key in (event.attributes or {})}
    for name, value in _vocabulary().items():
        if name in _NOT_SPAN_ATTRIBUTES:
            continue
        where = on_events if name in _ON_EVENTS else written
        assert value in where, f"no run here writes {name} ({value}): add one"

    with RunStore(database_url) as store:
        stored = {(run.trace_id, run.span_id): run for run in store.runs(limit=10_000)}
    resource = Resource({})
    assert len(stored) == len(spans)
    for span in spans:
        assert span.context is not None
        run = stored[(f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")]
        rebuilt = stored_span(run, resource)
        assert _normalized(rebuilt.attributes) == _normalized(span.attributes), span.name
        assert [(e.name, dict(e.attributes or {})) for e in rebuilt.events] == [
            (e.name, dict(e.attributes or {})) for e in span.events
        ], span.name


def test_the_vocabulary_imports_nothing() -> None:
    """runspan.attributes imports nothing, so that every part of runspan can use it."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(attributes.__file__).read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_each_name_is_spelled_in_one_module_only() -> None:
    """No attribute name of the vocabulary appears as a string literal anywhere else in runspan
    (migrations aside: a revision is frozen as it was written)."""
    import ast
    from pathlib import Path

    # Mime types are values, and LangGraph's "langgraph_node" is also a column's name.
    names = set(_vocabulary().values()) - {
        attributes.JSON_MIME,
        attributes.TEXT_MIME,
        attributes.NODE_KEY,
    }
    package = Path(attributes.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "attributes.py" or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{path.relative_to(package)}:{node.lineno} {node.value!r}")
    assert not offenders

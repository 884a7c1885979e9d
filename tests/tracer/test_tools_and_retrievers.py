"""Tool and retriever runs."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from opentelemetry.trace import SpanKind

from runspan.testing import SpanCapture
from tests.support import FruitRetriever, ToolCallingChatModel, assert_matches_langchain


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def run_tool_calls(message: AIMessage) -> list[ToolMessage]:
    return [add.invoke(call) for call in message.tool_calls]


class TestTools:
    def test_tool_called_by_a_model(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """A tool call becomes "execute_tool <tool>" with the tool name, call id and input."""
        prompt = ChatPromptTemplate.from_template("add {a} and {b}")
        chain = prompt | ToolCallingChatModel() | RunnableLambda(run_tool_calls)
        [result] = chain.invoke(
            {"a": 1, "b": 2}, config={"callbacks": [capture.handler, collector]}
        )
        assert result.content == "3"
        assert_matches_langchain(capture, collector)
        span = capture.span("execute_tool add")
        assert span.kind is SpanKind.INTERNAL
        attrs: dict[str, Any] = dict(span.attributes or {})
        assert attrs["gen_ai.operation.name"] == "execute_tool"
        assert attrs["gen_ai.tool.name"] == "add"
        assert attrs["gen_ai.tool.call.id"] == "call_abc123"
        assert attrs["gen_ai.tool.description"] == "Add two integers."
        assert attrs["langchain.run_type"] == "tool"
        assert attrs["gen_ai.tool.call.arguments"] == '{"a":1,"b":2}'
        assert attrs["gen_ai.tool.call.result"] == "3"  # the ToolMessage's content, as text
        assert "input.value" not in attrs
        assert "output.value" not in attrs
        assert capture.render().splitlines()[-1] == "    execute_tool add"

    def test_tool_invoked_directly(self, capture: SpanCapture) -> None:
        """A tool is a root run of its own when invoked alone."""
        assert add.invoke({"a": 2, "b": 5}, config={"callbacks": [capture.handler]}) == 7
        [root] = capture.tree()
        assert root.name == "execute_tool add"
        assert "gen_ai.tool.call.id" not in (root.span.attributes or {})


class TestRetrievers:
    def test_retriever_in_a_chain(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """A retriever is a CLIENT span with the query in and the documents out."""
        chain = RunnableLambda(lambda q: q.strip()) | FruitRetriever()
        docs = chain.invoke(" apples ", config={"callbacks": [capture.handler, collector]})
        assert len(docs) == 2
        assert_matches_langchain(capture, collector)
        span = capture.span("FruitRetriever")
        assert span.kind is SpanKind.CLIENT
        attrs: dict[str, Any] = dict(span.attributes or {})
        assert attrs["langchain.run_type"] == "retriever"
        assert attrs["gen_ai.operation.name"] == "retrieval"
        assert attrs["gen_ai.retrieval.query.text"] == "apples"
        documents = json.loads(str(attrs["gen_ai.retrieval.documents"]))
        assert documents[0]["content"] == "apples are red"

"""The OpenTelemetry GenAI content attributes, checked against the conventions' JSON schemas.

Jaeger's GenAI tab, Phoenix and Grafana render a model call's conversation from these
attributes; a value that does not validate is a blob to them, or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import ReadableSpan

from runspan.testing import SpanCapture, capture_spans
from tests.support import CONTENT_ATTRIBUTES, UsageChatModel, run_agent, validated


def model_spans(capture: SpanCapture) -> list[ReadableSpan]:
    return [
        span
        for span in capture.spans
        if (span.attributes or {}).get("gen_ai.operation.name") in ("chat", "text_completion")
    ]


def only_model(capture: SpanCapture) -> dict[str, Any]:
    (span,) = model_spans(capture)
    return dict(span.attributes or {})


class FailingStream(BaseChatModel):
    """Streams two chunks, then the connection drops."""

    @property
    def _llm_type(self) -> str:
        return "failing-stream"

    def _generate(self, messages: list[BaseMessage], **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for text in ("The answer ", "is"):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager is not None:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        raise ConnectionError("the stream was cut")


class Echo(BaseChatModel):
    """Answers with a fixed message; sees every message shape it is given."""

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(self, messages: list[BaseMessage], **kwargs: Any) -> ChatResult:
        answer = AIMessage(
            content=[
                {"type": "thinking", "thinking": "The user sent a photo."},
                {"type": "text", "text": "A red apple."},
            ],
            response_metadata={"stop_reason": "end_turn"},
        )
        return ChatResult(generations=[ChatGeneration(message=answer)])


class ScoredRetriever(BaseRetriever):
    """A vector store's answer: documents with ids and scores."""

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [
            Document(id="doc-1", page_content="Apples are red.", metadata={"score": 0.92}),
            Document(id="doc-2", page_content="Apples grow on trees.", metadata={"score": 0.71}),
        ]


class TestModelRuns:
    def test_a_chat_with_a_system_prompt(self, capture: SpanCapture) -> None:
        """The system prompt is the system instructions; the rest are input messages; the
        answer is an output message with its finish reason. No second copy as input.value."""
        prompt = ChatPromptTemplate.from_messages(
            [("system", "You count fruit."), ("human", "How many apples in {basket}?")]
        )
        (prompt | UsageChatModel()).invoke(
            {"basket": "the basket"}, config={"callbacks": [capture.handler]}
        )
        attributes = only_model(capture)
        assert validated(attributes, "gen_ai.system_instructions") == [
            {"type": "text", "content": "You count fruit."}
        ]
        assert validated(attributes, "gen_ai.input.messages") == [
            {
                "role": "user",
                "parts": [{"type": "text", "content": "How many apples in the basket?"}],
            }
        ]
        assert validated(attributes, "gen_ai.output.messages") == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "four"}],
                "finish_reason": "stop",
            }
        ]
        assert "input.value" not in attributes
        assert "output.value" not in attributes

    def test_a_streamed_answer_is_one_message_assembled_from_its_chunks(
        self, capture: SpanCapture
    ) -> None:
        model = GenericFakeChatModel(messages=iter([AIMessage(content="three red apples")]))
        chunks = list(model.stream("count", config={"callbacks": [capture.handler]}))
        assert len(chunks) > 1
        (message,) = validated(only_model(capture), "gen_ai.output.messages")
        assert message["parts"] == [{"type": "text", "content": "three red apples"}]
        assert message["role"] == "assistant"

    def test_an_error_mid_stream_keeps_what_was_said(self, capture: SpanCapture) -> None:
        """What streamed before the error is the output, ended by the error."""
        with pytest.raises(ConnectionError):
            list(FailingStream().stream("hi", config={"callbacks": [capture.handler]}))
        attributes = only_model(capture)
        validated(attributes, "gen_ai.input.messages")
        assert validated(attributes, "gen_ai.output.messages") == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "The answer is"}],
                "finish_reason": "error",
            }
        ]
        assert attributes["error.type"] == "ConnectionError"

    def test_every_provider_shape_maps_onto_parts_and_no_bytes_leave(
        self, capture: SpanCapture
    ) -> None:
        """OpenAI's image_url and input_audio, Anthropic's base64 image, tool_use and
        tool_result blocks, Gemini's media block, LangChain's standard blocks and reasoning:
        all validate, inline bytes are described, never copied."""
        pixels = "iVBORw0KGgo" * 2000  # base64 of an image, 22,000 chars
        history = [
            SystemMessage(content=[{"type": "text", "text": "Describe fruit."}]),
            HumanMessage(
                content=[
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixels}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/apple.png"}},
                    {"type": "input_audio", "input_audio": {"data": pixels, "format": "wav"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": pixels},
                    },
                    {"type": "media", "mime_type": "video/mp4", "file_uri": "gs://b/clip.mp4"},
                    {
                        "type": "image",
                        "source_type": "base64",
                        "data": pixels,
                        "mime_type": "image/png",
                    },
                    {"type": "file", "file_id": "file-abc", "mime_type": "application/pdf"},
                ]
            ),
            AIMessage(
                content=[
                    {"type": "text", "text": "Let me look it up."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "lookup",
                        "input": {"q": "apple"},
                    },
                ],
                tool_calls=[{"name": "lookup", "args": {"q": "apple"}, "id": "toolu_1"}],
            ),
            HumanMessage(
                content=[{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a fruit"}]
            ),
            ToolMessage(content="a fruit", tool_call_id="toolu_1"),
        ]
        Echo().invoke(history, config={"callbacks": [capture.handler]})
        attributes = only_model(capture)
        text = json.dumps(attributes)
        assert "iVBORw0KGgo" not in text
        assert validated(attributes, "gen_ai.system_instructions") == [
            {"type": "text", "content": "Describe fruit."}
        ]
        user, assistant, tool_result_in_user, tool = validated(attributes, "gen_ai.input.messages")
        assert [part["type"] for part in user["parts"]] == [
            "text",
            "image",
            "uri",
            "audio",
            "image",
            "uri",
            "image",
            "file",
        ]
        assert user["parts"][1] == {
            "type": "image",
            "modality": "image",
            "mime_type": "image/png",
            "content_omitted": "22000 base64 chars",
        }
        assert user["parts"][2]["uri"] == "https://example.com/apple.png"
        assert user["parts"][5] == {
            "type": "uri",
            "modality": "video",
            "uri": "gs://b/clip.mp4",
            "mime_type": "video/mp4",
        }
        assert assistant["parts"] == [
            {"type": "text", "content": "Let me look it up."},
            {"type": "tool_call", "id": "toolu_1", "name": "lookup", "arguments": {"q": "apple"}},
        ]
        assert tool_result_in_user["parts"] == [
            {"type": "tool_call_response", "id": "toolu_1", "response": "a fruit"}
        ]
        assert tool == {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "toolu_1", "response": "a fruit"}],
        }
        (answer,) = validated(attributes, "gen_ai.output.messages")
        assert answer["parts"] == [
            {"type": "reasoning", "content": "The user sent a photo."},
            {"type": "text", "content": "A red apple."},
        ]
        assert answer["finish_reason"] == "stop"  # Anthropic's end_turn

    def test_the_tools_offered_are_tool_definitions(self, capture: SpanCapture) -> None:
        offered = [
            {
                "type": "function",
                "function": {
                    "name": "add",
                    "description": "Adds two integers.",
                    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
                },
            },
            {
                "name": "lookup",
                "description": "Anthropic's format.",
                "input_schema": {"type": "object"},
            },
            {"type": "web_search_preview"},  # a provider's built-in tool
        ]
        UsageChatModel().bind(tools=offered).invoke("add", config={"callbacks": [capture.handler]})
        assert validated(only_model(capture), "gen_ai.tool.definitions") == [
            {
                "type": "function",
                "name": "add",
                "description": "Adds two integers.",
                "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
            },
            {
                "type": "function",
                "name": "lookup",
                "description": "Anthropic's format.",
                "parameters": {"type": "object"},
            },
            {"type": "web_search_preview", "name": "web_search_preview"},
        ]


class TestCapsAndSwitches:
    def test_a_1_mb_message_is_capped_marked_and_still_valid(self) -> None:
        with capture_spans(max_value_chars=4096) as capture:
            huge = "apple " * 175_000  # 1,050,000 chars
            UsageChatModel().invoke(
                [SystemMessage(content=huge), HumanMessage(content=huge)],
                config={"callbacks": [capture.handler]},
            )
            attributes = only_model(capture)
        for name in ("gen_ai.system_instructions", "gen_ai.input.messages"):
            raw = str(attributes[name])
            assert len(raw) < 4096 + 200
            assert "[runspan: truncated, 1050000 chars in all]" in raw
            validated(attributes, name)

    def test_content_capture_off_keeps_every_content_attribute_out(self) -> None:
        with capture_spans(capture_content=False) as capture:
            run_agent(capture.handler)
            spans = capture.spans
        assert len(model_spans_of(spans)) == 2
        for span in spans:
            assert not set(span.attributes or {}) & set(CONTENT_ATTRIBUTES), span.name

    def test_secrets_in_messages_are_redacted(self, capture: SpanCapture) -> None:
        secret = "sk-proj-" + "a1B2c3D4" * 6
        UsageChatModel().invoke(f"my key is {secret}", config={"callbacks": [capture.handler]})
        attributes = only_model(capture)
        assert secret not in str(attributes["gen_ai.input.messages"])
        validated(attributes, "gen_ai.input.messages")


def model_spans_of(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]


class TestToolsRetrieversAndGraphs:
    def test_a_react_agent_with_two_tool_calls(self, capture: SpanCapture) -> None:
        """Each model span carries the conversation so far (assistant tool calls, tool
        results, the final answer), each tool span its arguments and result, and the graph
        is an agent named by its run."""
        run_agent(capture.handler)
        first, second = (dict(span.attributes or {}) for span in model_spans(capture))
        for attributes in (first, second):
            assert validated(attributes, "gen_ai.system_instructions") == [
                {"type": "text", "content": "You are a travel assistant."}
            ]
            validated(attributes, "gen_ai.tool.definitions")
        (calls,) = validated(first, "gen_ai.output.messages")
        assert calls["finish_reason"] == "tool_call"
        assert [(p["name"], p["arguments"]) for p in calls["parts"]] == [
            ("get_weather", {"city": "Oslo"}),
            ("get_time", {"city": "Oslo"}),
        ]
        history = validated(second, "gen_ai.input.messages")
        assert [m["role"] for m in history] == ["user", "assistant", "tool", "tool"]
        assert history[2]["parts"] == [
            {"type": "tool_call_response", "id": "call_w1", "response": "sunny and 21C in Oslo"}
        ]
        (answer,) = validated(second, "gen_ai.output.messages")
        assert answer["parts"] == [
            {"type": "text", "content": "In Oslo it is 14:05, sunny and 21C."}
        ]
        weather = dict(capture.span("execute_tool get_weather").attributes or {})
        assert json.loads(str(weather["gen_ai.tool.call.arguments"])) == {"city": "Oslo"}
        assert weather["gen_ai.tool.call.result"] == "sunny and 21C in Oslo"
        graph = dict(capture.span("LangGraph").attributes or {})
        assert graph["gen_ai.operation.name"] == "invoke_agent"
        assert graph["gen_ai.agent.name"] == "LangGraph"

    def test_a_graph_without_tools_is_a_workflow(self, capture: SpanCapture) -> None:
        from langgraph.graph import END, START, StateGraph
        from typing_extensions import TypedDict

        class State(TypedDict):
            text: str

        builder = StateGraph(State)
        builder.add_node("shout", lambda state: {"text": state["text"].upper()})
        builder.add_edge(START, "shout")
        builder.add_edge("shout", END)
        graph = builder.compile(name="shouter")
        graph.invoke({"text": "hi"}, config={"callbacks": [capture.handler]})
        attributes = dict(capture.span("shouter").attributes or {})
        assert attributes["gen_ai.operation.name"] == "invoke_workflow"
        assert "gen_ai.agent.name" not in attributes
        assert "gen_ai.operation.name" not in (capture.span("shout").attributes or {})

    def test_a_retrieval_has_its_query_and_scored_documents(self, capture: SpanCapture) -> None:
        chain = RunnableLambda(lambda q: q, name="ask") | ScoredRetriever()
        chain.invoke("red apples", config={"callbacks": [capture.handler]})
        attributes = dict(capture.span("ScoredRetriever").attributes or {})
        assert attributes["gen_ai.operation.name"] == "retrieval"
        assert attributes["gen_ai.retrieval.query.text"] == "red apples"
        assert validated(attributes, "gen_ai.retrieval.documents") == [
            {"id": "doc-1", "score": 0.92, "content": "Apples are red."},
            {"id": "doc-2", "score": 0.71, "content": "Apples grow on trees."},
        ]

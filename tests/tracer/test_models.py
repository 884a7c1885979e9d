"""Model runs: GenAI names, kinds and attributes, and token usage from every shape."""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from opentelemetry.trace import SpanKind

from runspan.testing import SpanCapture
from tests.support import UsageChatModel, fake_chat

PROMPT = ChatPromptTemplate.from_template("What is 1 + {number}?")
FULL_USAGE = {
    "gen_ai.usage.input_tokens": 11,
    "gen_ai.usage.output_tokens": 7,
}


def _model_attrs(capture: SpanCapture) -> dict[str, object]:
    [span] = [s for s in capture.spans if s.kind is SpanKind.CLIENT]
    return dict(span.attributes or {})


class TestChatModelSpans:
    def test_named_after_the_operation_and_model(self, capture: SpanCapture) -> None:
        """A chat model with a known model is "chat <model>", kind CLIENT, with request
        attributes from LangChain's metadata and invocation parameters."""
        (PROMPT | UsageChatModel()).invoke({"number": "2"}, config={"callbacks": [capture.handler]})
        span = capture.span("chat gpt-test")
        assert span.kind is SpanKind.CLIENT
        attrs = dict(span.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["gen_ai.request.model"] == "gpt-test"
        assert attrs["gen_ai.request.temperature"] == 0.2
        assert attrs["gen_ai.request.max_tokens"] == 64
        assert attrs["gen_ai.response.model"] == "gpt-test-2025"
        assert attrs["gen_ai.response.id"] == "resp-123"
        assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
        assert attrs["langchain.run_type"] == "llm"
        # The content travels once, as the GenAI conventions' messages.
        assert "input.value" not in attrs
        assert "output.value" not in attrs
        assert json.loads(str(attrs["gen_ai.input.messages"])) == [
            {"role": "user", "parts": [{"type": "text", "content": "What is 1 + 2?"}]}
        ]
        assert json.loads(str(attrs["gen_ai.output.messages"])) == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "four"}],
                "finish_reason": "stop",
            }
        ]

    def test_unknown_model_keeps_the_run_name(self, capture: SpanCapture) -> None:
        """Without a model name the span is named after the run."""
        (PROMPT | fake_chat()).invoke({"number": "2"}, config={"callbacks": [capture.handler]})
        attrs = dict(capture.span("GenericFakeChatModel").attributes or {})
        assert "gen_ai.request.model" not in attrs
        assert attrs["gen_ai.operation.name"] == "chat"

    def test_stop_sequences(self, capture: SpanCapture) -> None:
        """Stop sequences given at call time are recorded."""
        model = UsageChatModel().bind(stop=["\n\n"])
        (PROMPT | model).invoke({"number": "2"}, config={"callbacks": [capture.handler]})
        assert _model_attrs(capture)["gen_ai.request.stop_sequences"] == ("\n\n",)


class TestTokenUsage:
    @pytest.mark.parametrize(
        ("shape", "details"),
        [
            (
                "usage_metadata",
                {
                    "gen_ai.usage.cache_read.input_tokens": 3,
                    "gen_ai.usage.cache_creation.input_tokens": 2,
                    "gen_ai.usage.reasoning.output_tokens": 5,
                },
            ),
            (
                "openai_llm_output",
                {
                    "gen_ai.usage.cache_read.input_tokens": 3,
                    "gen_ai.usage.reasoning.output_tokens": 5,
                },
            ),
            (
                "anthropic_llm_output",
                {
                    "gen_ai.usage.cache_read.input_tokens": 3,
                    "gen_ai.usage.cache_creation.input_tokens": 2,
                },
            ),
            ("response_metadata", {}),
        ],
    )
    def test_each_reported_shape(
        self, capture: SpanCapture, shape: str, details: dict[str, int]
    ) -> None:
        """Usage is read from usage_metadata, llm_output and response_metadata alike; a
        count no shape reports is absent."""
        (PROMPT | UsageChatModel(shape=shape)).invoke(
            {"number": "2"}, config={"callbacks": [capture.handler]}
        )
        attrs = _model_attrs(capture)
        usage = {k: v for k, v in attrs.items() if k.startswith("gen_ai.usage.")}
        assert usage == {**FULL_USAGE, **details}

    def test_unknown_usage_is_absent_not_zero(self, capture: SpanCapture) -> None:
        """A model that reports no usage gets no usage attributes at all."""
        (PROMPT | UsageChatModel(shape="none")).invoke(
            {"number": "2"}, config={"callbacks": [capture.handler]}
        )
        assert not [k for k in _model_attrs(capture) if k.startswith("gen_ai.usage.")]


class TestCompletionModels:
    def test_text_completion_llm(self, capture: SpanCapture) -> None:
        """A plain LLM is a text_completion span with the prompt and completion as content."""
        llm = FakeListLLM(responses=["4"])
        (PromptTemplate.from_template("1 + {n} =") | llm).invoke(
            {"n": "3"}, config={"callbacks": [capture.handler]}
        )
        attrs = _model_attrs(capture)
        assert attrs["gen_ai.operation.name"] == "text_completion"
        assert json.loads(str(attrs["gen_ai.input.messages"])) == [
            {"role": "user", "parts": [{"type": "text", "content": "1 + 3 ="}]}
        ]
        assert json.loads(str(attrs["gen_ai.output.messages"])) == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "4"}],
                "finish_reason": "stop",
            }
        ]


class TestProviderUsageShapes:
    """Raw usage shapes of providers whose LangChain integrations pass them through."""

    def test_gemini_counts(self) -> None:
        """Gemini's *_token_count fields, including cached and thinking tokens."""
        from runspan.tracer.usage import usage_attributes

        assert usage_attributes(
            {
                "prompt_token_count": 20,
                "candidates_token_count": 5,
                "total_token_count": 40,
                "cached_content_token_count": 4,
                "thoughts_token_count": 15,
            }
        ) == {
            "gen_ai.usage.input_tokens": 20,
            "gen_ai.usage.output_tokens": 5,
            "gen_ai.usage.cache_read.input_tokens": 4,
            "gen_ai.usage.reasoning.output_tokens": 15,
        }

    def test_ollama_counts_at_the_top_of_response_metadata(self) -> None:
        """Ollama reports prompt_eval_count and eval_count beside its other metadata."""
        from langchain_core.messages import AIMessage

        from runspan.tracer.usage import reported_usage

        message = AIMessage(
            content="hi",
            response_metadata={
                "model": "llama3",
                "prompt_eval_count": 12,
                "eval_count": 3,
            },
        )
        assert reported_usage([message], None) == {
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 3,
        }

    def test_nonsense_counts_are_ignored(self) -> None:
        """Negative, boolean or textual counts are not usage."""
        from runspan.tracer.usage import usage_attributes

        assert (
            usage_attributes({"input_tokens": -1, "output_tokens": True, "prompt_tokens": "12"})
            == {}
        )

"""The LangChain workloads the benchmarks run: real langchain-core runnables, offline models."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import tool

_USAGE = {"input_tokens": 14, "output_tokens": 3, "total_tokens": 17}


def _chat(text: str = "three") -> GenericFakeChatModel:
    """langchain-core's fake chat model, answering forever, with token usage."""
    return GenericFakeChatModel(
        messages=itertools.repeat(AIMessage(content=text, usage_metadata=_USAGE))
    )


def _prompt() -> ChatPromptTemplate:
    return ChatPromptTemplate.from_template("What is 1 + {number}?")


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"{city}: 14°C"


class ToolCallingModel(BaseChatModel):
    """A chat model that asks for one tool call, as providers' function calling does."""

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = AIMessage(
            content="",
            tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
            usage_metadata=_USAGE,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def _nested_ten_steps() -> Runnable[Any, Any]:
    chain: Runnable[Any, Any] = RunnableLambda(lambda x: x)
    for _ in range(9):
        inner = chain
        chain = RunnableLambda(lambda x: x) | RunnableLambda(inner.invoke)
    return chain


@dataclass(frozen=True)
class Workload:
    """A named call of a chain, given the run config (callbacks) to use."""

    name: str
    call: Callable[[RunnableConfig], Any]


def prompt_model_parser() -> Runnable[Any, Any]:
    """The seed's chain with a parser: ``prompt | chat model | parser``."""
    return _prompt() | _chat() | StrOutputParser()


def workloads() -> list[Workload]:
    seed = _prompt() | _chat()
    with_parser = prompt_model_parser()
    nested = _nested_ten_steps()
    streamed = _prompt() | _chat(" ".join(["word"] * 50)) | StrOutputParser()
    calling = (
        _prompt()
        | ToolCallingModel()
        | RunnableLambda(lambda message: get_weather.invoke(message.tool_calls[0]["args"]))
    )
    inputs16 = [{"number": str(n)} for n in range(16)]

    def stream(config: RunnableConfig) -> str:
        chunks = list(streamed.stream({"number": "2"}, config=config))
        assert len(chunks) >= 50
        return "".join(chunks)

    return [
        Workload("prompt | chat model", lambda c: seed.invoke({"number": "2"}, config=c)),
        Workload(
            "prompt | chat model | parser",
            lambda c: with_parser.invoke({"number": "2"}, config=c),
        ),
        Workload("10-step nested chain", lambda c: nested.invoke(1, config=c)),
        Workload("batch of 16", lambda c: with_parser.batch(inputs16, config=c)),
        Workload("stream of 50 chunks", stream),
        Workload("tool-calling step", lambda c: calling.invoke({"number": "2"}, config=c)),
    ]


def numbered(count: int) -> Iterator[dict[str, str]]:
    """Inputs for the seed chain."""
    for n in range(count):
        yield {"number": str(n)}

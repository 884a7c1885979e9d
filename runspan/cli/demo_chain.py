"""The demo: a real LangChain chain, run offline, traced by runspan.

It has what an LLM application has: a prompt, a chat model that reports token usage, a
retriever, a tool called from a nested lambda, and a streamed call. The model is a subclass of
langchain-core's own offline ``GenericFakeChatModel``, so the demo needs no network and no key.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, cast

from langchain_core.callbacks import (
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel
from langchain_core.tools import tool

QUESTION = "What should I pack for a weekend in Paris?"
_ANSWER = "Pack a light raincoat, comfortable shoes and a small umbrella."
# A cast, not a typed literal: langchain-core 1.8 declares UsageMetadata in a way that mypy
# reads as requiring its optional keys.
_USAGE = cast("UsageMetadata", {"input_tokens": 64, "output_tokens": 12, "total_tokens": 76})

_GUIDES = [
    "Paris in spring: mild days, frequent short showers.",
    "Walking is the best way to see Paris; bring comfortable shoes.",
    "Lisbon is hilly and sunny most of the year.",
]


class DemoChatModel(GenericFakeChatModel):
    """langchain-core's offline chat model, reporting token usage as real providers do."""

    model_name: str = "demo-gpt"

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from super()._stream(messages, stop, run_manager, **kwargs)
        # Providers send usage in a last, empty chunk; LangChain sums it into the message.
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=_USAGE))


class TravelGuideRetriever(BaseRetriever):
    """Finds the guide lines that mention a city named in the query."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [
            Document(page_content=line, metadata={"source": "guides"})
            for line in _GUIDES
            if line.split()[0].rstrip(":;") in query
        ]


@tool
def weather_forecast(city: str) -> str:
    """The weekend forecast for a city."""
    return f"{city}: 14°C, showers on Saturday"


def _add_forecast(question: str) -> str:
    forecast = weather_forecast.invoke({"city": "Paris"})
    return f"{question}\nForecast: {forecast}"


def _format_guides(documents: list[Document]) -> str:
    return "\n".join(d.page_content for d in documents)


def build_chain() -> Runnable[str, str]:
    """Question in, answer out: forecast (a tool in a lambda), guides (a retriever), model."""
    model = DemoChatModel(
        messages=itertools.repeat(AIMessage(content=_ANSWER, usage_metadata=_USAGE))
    )
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a travel assistant. Guides:\n{guides}"),
            ("human", "{question}"),
        ]
    )
    gather = RunnableParallel(
        guides=TravelGuideRetriever() | RunnableLambda(_format_guides),
        question=RunnableLambda(lambda q: q, name="passthrough"),
    )
    return (
        RunnableLambda(_add_forecast) | gather | prompt | model | StrOutputParser()
    ).with_config(run_name="travel_assistant")


def run_demo(handler: BaseCallbackHandler) -> tuple[str, str]:
    """Invoke the chain once and stream it once, traced by ``handler``."""
    chain = build_chain()
    config: Any = {"callbacks": [handler]}
    answer = chain.invoke(QUESTION, config=config)
    streamed = "".join(chain.stream(QUESTION, config=config))
    return answer, streamed

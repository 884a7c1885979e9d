"""Every run of a chain becomes one span, parented and timed as LangChain ran it."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from opentelemetry.trace import SpanKind

from runspan.testing import SpanCapture
from tests.support import assert_matches_langchain, fake_chat

PROMPT = ChatPromptTemplate.from_template("What is 1 + {number}?")


class TestSeedShape:
    def test_prompt_and_model_attached_with_with_config(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """The README's example: a span per run, nested under the sequence, with LangChain's
        names and the span kinds backends expect."""
        chain = (PROMPT | fake_chat()).with_config(callbacks=[capture.handler, collector])
        result = chain.invoke({"number": "2"})
        assert result.content == "three apples"
        assert capture.render() == (
            "RunnableSequence\n  ChatPromptTemplate\n  GenericFakeChatModel"
        )
        assert_matches_langchain(capture, collector)
        assert capture.span("RunnableSequence").kind is SpanKind.INTERNAL
        assert capture.span("ChatPromptTemplate").kind is SpanKind.INTERNAL
        assert capture.span("GenericFakeChatModel").kind is SpanKind.CLIENT

    def test_callbacks_passed_in_config_of_one_call(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """config={"callbacks": [...]} on a single call traces that call."""
        (PROMPT | fake_chat()).invoke(
            {"number": "2"}, config={"callbacks": [capture.handler, collector]}
        )
        assert_matches_langchain(capture, collector)
        assert len(capture.spans) == 3

    def test_run_attributes(self, capture: SpanCapture) -> None:
        """Each span carries its run id, parent run id, run type and tags."""
        chain = PROMPT | fake_chat() | StrOutputParser()
        chain.invoke({"number": "2"}, config={"callbacks": [capture.handler], "tags": ["t1"]})
        root = capture.span("RunnableSequence")
        parser = capture.span("StrOutputParser")
        assert root.attributes is not None
        assert parser.attributes is not None
        assert root.attributes["langchain.run_type"] == "chain"
        assert "langchain.parent_run_id" not in root.attributes
        assert parser.attributes["langchain.run_type"] == "parser"
        assert parser.attributes["langchain.parent_run_id"] == root.attributes["langchain.run_id"]
        assert "t1" in parser.attributes["langchain.tags"]  # type: ignore[operator]
        prompt = capture.span("ChatPromptTemplate")
        assert prompt.attributes is not None
        assert prompt.attributes["langchain.run_type"] == "prompt"

    def test_spans_start_and_end_when_the_callbacks_fire(self, capture: SpanCapture) -> None:
        """Times are the callbacks' own: a run's span starts before its code runs and ends
        after it, inside its parent's span."""
        import time

        ran: list[int] = []

        def work(x: Any) -> Any:
            ran.append(time.time_ns())
            time.sleep(0.001)
            ran.append(time.time_ns())
            return x

        before = time.time_ns()
        (RunnableLambda(work) | StrOutputParser()).invoke(
            "x", config={"callbacks": [capture.handler]}
        )
        after = time.time_ns()
        span = capture.span("work")
        root = capture.span("RunnableSequence")
        assert span.start_time is not None
        assert span.end_time is not None
        assert root.start_time is not None
        assert root.end_time is not None
        assert before <= root.start_time <= span.start_time <= ran[0]
        assert ran[1] <= span.end_time <= root.end_time <= after


class TestNesting:
    def test_three_levels_through_a_lambda_invoking_another_chain(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """A chain invoked inside a lambda nests under it, two levels down."""
        inner = PROMPT | fake_chat() | StrOutputParser()

        def middle(x: dict[str, str]) -> str:
            return inner.invoke(x)

        outer = RunnableLambda(lambda x: {"number": x}) | RunnableLambda(middle)
        assert outer.invoke("2", config={"callbacks": [capture.handler, collector]})
        assert_matches_langchain(capture, collector)
        assert capture.render() == "\n".join(
            [
                "RunnableSequence",
                "  RunnableLambda",
                "  middle",
                "    RunnableSequence",
                "      ChatPromptTemplate",
                "      GenericFakeChatModel",
                "      StrOutputParser",
            ]
        )

    def test_runnable_parallel(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """Branches of a RunnableParallel run in threads and still nest under it."""
        chain = RunnableParallel(
            a=PROMPT | fake_chat(), b=RunnableLambda(lambda x: x["number"] * 2)
        )
        out = chain.invoke({"number": "2"}, config={"callbacks": [capture.handler, collector]})
        assert out["b"] == "22"
        assert_matches_langchain(capture, collector)
        [root] = capture.tree()
        assert root.name == "RunnableParallel<a,b>"
        assert sorted(c.name for c in root.children) == ["RunnableLambda", "RunnableSequence"]


class TestConcurrency:
    def test_batch_of_16_with_max_concurrency_8(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """Each input of a batch is its own trace, however its callbacks interleave."""
        chain = PROMPT | fake_chat() | StrOutputParser()
        inputs = [{"number": str(i)} for i in range(16)]
        outputs = chain.batch(
            inputs, config={"callbacks": [capture.handler, collector], "max_concurrency": 8}
        )
        assert len(outputs) == 16
        roots = assert_matches_langchain(capture, collector)
        assert len(roots) == 16
        assert len(capture.spans) == 64
        assert capture.handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}

    def test_50_concurrent_ainvokes(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """asyncio.gather of 50 ainvokes gives 50 separate, intact traces."""
        chain = PROMPT | fake_chat() | StrOutputParser()

        async def main() -> list[str]:
            return await asyncio.gather(
                *(
                    chain.ainvoke(
                        {"number": str(i)}, config={"callbacks": [capture.handler, collector]}
                    )
                    for i in range(50)
                )
            )

        assert len(asyncio.run(main())) == 50
        roots = assert_matches_langchain(capture, collector)
        assert len(roots) == 50
        assert capture.handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}

    def test_abatch(self, capture: SpanCapture, collector: RunCollectorCallbackHandler) -> None:
        """abatch gives one trace per input."""
        chain = PROMPT | fake_chat() | StrOutputParser()
        outputs = asyncio.run(
            chain.abatch(
                [{"number": str(i)} for i in range(6)],
                config={"callbacks": [capture.handler, collector], "max_concurrency": 3},
            )
        )
        assert len(outputs) == 6
        assert len(assert_matches_langchain(capture, collector)) == 6

    def test_runs_from_many_threads_on_one_handler(self, capture: SpanCapture) -> None:
        """One handler shared by threads that invoke at the same time keeps traces apart."""
        from concurrent.futures import ThreadPoolExecutor

        chain = PROMPT | fake_chat() | StrOutputParser()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: chain.invoke(
                        {"number": str(i)}, config={"callbacks": [capture.handler]}
                    ),
                    range(40),
                )
            )
        roots = capture.tree()
        assert len(roots) == 40
        assert all(len(root.children) == 3 for root in roots)
        assert len({r.span.context.trace_id for r in roots if r.span.context}) == 40

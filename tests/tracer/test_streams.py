"""Streams: fully consumed, abandoned after the first chunk, and time to first chunk."""

from __future__ import annotations

import asyncio
import gc

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from opentelemetry import context as otel_context

from runspan.testing import SpanCapture
from tests.support import UsageChatModel, assert_matches_langchain, fake_chat, spans_by_run_id

PROMPT = ChatPromptTemplate.from_template("Count to {number}")
IDLE = {"live_runs": 0, "ended_runs": 0, "traces": 0}


def _attrs(capture: SpanCapture, name: str) -> dict[str, object]:
    return dict(capture.span(name).attributes or {})


class TestConsumedStreams:
    def test_stream_fully_consumed(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """A consumed stream gives the same tree as invoke, with the streamed output."""
        chain = PROMPT | fake_chat("one two three") | StrOutputParser()
        chunks = list(
            chain.stream({"number": "3"}, config={"callbacks": [capture.handler, collector]})
        )
        assert "".join(chunks) == "one two three"
        assert_matches_langchain(capture, collector)
        root = _attrs(capture, "RunnableSequence")
        assert root["output.value"] == '"one two three"'
        # The input is known only at the end of a stream; it is recorded then.
        assert root["input.value"] == '{"number":"3"}'
        assert capture.handler.state_sizes() == IDLE

    def test_astream_fully_consumed(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """The async stream gives the same tree as the sync one."""
        chain = PROMPT | fake_chat("one two three") | StrOutputParser()

        async def main() -> list[str]:
            return [
                c
                async for c in chain.astream(
                    {"number": "3"}, config={"callbacks": [capture.handler, collector]}
                )
            ]

        assert "".join(asyncio.run(main())) == "one two three"
        assert_matches_langchain(capture, collector)
        assert capture.handler.state_sizes() == IDLE

    def test_time_to_first_chunk_and_its_event(self, capture: SpanCapture) -> None:
        """A streamed model call records when its first chunk came, once."""
        chain = PROMPT | fake_chat("one two three")
        list(chain.stream({"number": "3"}, config={"callbacks": [capture.handler]}))
        model = capture.span("GenericFakeChatModel")
        assert model.attributes is not None
        ttfc = model.attributes["gen_ai.response.time_to_first_chunk"]
        assert isinstance(ttfc, float)
        assert ttfc >= 0
        first = [e for e in model.events if e.name == "gen_ai.first_chunk"]
        assert len(first) == 1
        assert model.start_time is not None
        assert model.end_time is not None
        assert model.start_time <= first[0].timestamp <= model.end_time

    def test_streamed_usage_is_summed_from_chunks(self, capture: SpanCapture) -> None:
        """Token usage reported on streamed chunks reaches the model span."""
        chain = PROMPT | UsageChatModel(reply="one two three")
        list(chain.stream({"number": "3"}, config={"callbacks": [capture.handler]}))
        model = _attrs(capture, "chat gpt-test")
        assert model["gen_ai.usage.input_tokens"] == 11
        assert model["gen_ai.usage.output_tokens"] == 7


class TestAbandonedStreams:
    def test_stream_abandoned_after_first_chunk(self, capture: SpanCapture) -> None:
        """Runs whose end never comes are ended with the root, marked unfinished, and the
        handler keeps nothing."""
        chain = PROMPT | fake_chat("one two three") | StrOutputParser()
        before = otel_context.get_current()
        stream = chain.stream({"number": "3"}, config={"callbacks": [capture.handler]})
        assert next(stream) == "one"
        # While the stream is suspended, the caller's code sees its own context, not the
        # stream's runs: a span it opens now is not parented under them.
        assert otel_context.get_current() is before
        with capture.provider.get_tracer("app").start_as_current_span("after") as after:
            assert after.parent is None
        del stream
        gc.collect()
        assert len(spans_by_run_id(capture.spans)) == 4
        assert capture.handler.state_sizes() == IDLE
        unfinished = [s for s in capture.spans if (s.attributes or {}).get("runspan.unfinished")]
        assert unfinished, "the model and parser never reported an end"
        root = capture.span("RunnableSequence")
        for span in unfinished:
            assert span.end_time is not None
            assert root.end_time is not None
            assert span.end_time <= root.end_time
        # The next invoke is a clean root of its own trace.
        capture.clear()
        chain.invoke({"number": "1"}, config={"callbacks": [capture.handler]})
        [tree] = capture.tree()
        assert tree.span.parent is None

    def test_astream_abandoned_after_first_chunk(self, capture: SpanCapture) -> None:
        """An async stream closed after one chunk leaves no open span and no state."""
        chain = PROMPT | fake_chat("one two three") | StrOutputParser()

        async def main() -> None:
            before = otel_context.get_current()
            stream = chain.astream({"number": "3"}, config={"callbacks": [capture.handler]})
            assert await anext(stream) == "one"
            assert otel_context.get_current() is before
            await stream.aclose()

        asyncio.run(main())
        assert len(capture.spans) == 4
        assert capture.handler.state_sizes() == IDLE

    def test_stream_never_closed_is_ended_by_age(self) -> None:
        """A stream kept open forever is ended as unfinished once older than the limit."""
        import time

        capture = SpanCapture(max_run_age_seconds=0.01)
        chain = PROMPT | fake_chat("one two three") | StrOutputParser()
        stream = chain.stream({"number": "3"}, config={"callbacks": [capture.handler]})
        next(stream)
        time.sleep(0.02)
        chain.invoke({"number": "1"}, config={"callbacks": [capture.handler]})
        expired = [
            s
            for s in capture.spans
            if (s.attributes or {}).get("runspan.unfinished.reason") == "expired"
        ]
        assert {s.name for s in expired} >= {"RunnableSequence", "GenericFakeChatModel"}
        assert capture.handler.state_sizes() == IDLE
        stream.close()  # its late end callbacks are ignored, not errors
        assert capture.handler.state_sizes() == IDLE
        capture.provider.shutdown()

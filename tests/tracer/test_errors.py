"""Failures: the failing run and every ancestor that fails with it are marked ERROR."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from opentelemetry.trace import StatusCode

from runspan.testing import SpanCapture
from tests.support import assert_matches_langchain


class QuotaError(RuntimeError):
    pass


def fail(x: Any) -> Any:
    raise QuotaError("quota exhausted for key sk-abcdefghijklmnopqrstuvwxyz123456")


def three_levels_deep() -> Any:
    level3 = RunnableLambda(lambda x: x) | RunnableLambda(fail)
    level2 = RunnableLambda(lambda x: x) | RunnableLambda(lambda x: level3.invoke(x))
    return RunnableLambda(lambda x: x) | RunnableLambda(lambda x: level2.invoke(x))


async def _async_fail(x: Any) -> Any:
    fail(x)


def three_levels_deep_async() -> Any:
    level3 = RunnableLambda(lambda x: x) | RunnableLambda(_async_fail)

    async def call3(x: Any) -> Any:
        return await level3.ainvoke(x)

    level2 = RunnableLambda(lambda x: x) | RunnableLambda(call3)

    async def call2(x: Any) -> Any:
        return await level2.ainvoke(x)

    return RunnableLambda(lambda x: x) | RunnableLambda(call2)


def _check_failure(capture: SpanCapture, failing: str) -> None:
    failed = [s for s in capture.spans if s.status.status_code is StatusCode.ERROR]
    # the failing lambda and each sequence and lambda it ran inside: 3 sequences, 3 lambdas
    assert len(failed) == 6, capture.render()
    names = {s.name for s in failed}
    assert failing in names
    for span in failed:
        attrs = span.attributes or {}
        assert attrs["error.type"] == f"{__name__}.QuotaError"
        [event] = [e for e in span.events if e.name == "exception"]
        event_attrs = event.attributes or {}
        assert event_attrs["exception.type"] == f"{__name__}.QuotaError"
        assert "quota exhausted" in str(event_attrs["exception.message"])
        assert "Traceback" in str(event_attrs["exception.stacktrace"])
        # the key in the message is redacted before it becomes an attribute
        assert "sk-abc" not in str(event_attrs)
        assert "sk-abc" not in str(span.status.description)
    passed = [s for s in capture.spans if s.status.status_code is not StatusCode.ERROR]
    assert all(not s.events for s in passed)


class TestErrors:
    def test_exception_three_levels_deep(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """The failing run and its ancestors are ERROR with an exception event; the
        siblings that succeeded are not."""
        with pytest.raises(QuotaError):
            three_levels_deep().invoke(1, config={"callbacks": [capture.handler, collector]})
        assert_matches_langchain(capture, collector)
        _check_failure(capture, "fail")
        assert capture.handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}

    def test_exception_three_levels_deep_async(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """The same on the async path."""
        with pytest.raises(QuotaError):
            asyncio.run(
                three_levels_deep_async().ainvoke(
                    1, config={"callbacks": [capture.handler, collector]}
                )
            )
        assert_matches_langchain(capture, collector)
        _check_failure(capture, "_async_fail")

    def test_the_next_invoke_after_an_error_is_a_clean_root(self, capture: SpanCapture) -> None:
        """An exception leaves nothing current behind."""
        with pytest.raises(QuotaError):
            three_levels_deep().invoke(1, config={"callbacks": [capture.handler]})
        capture.clear()
        RunnableLambda(lambda x: x).invoke(1, config={"callbacks": [capture.handler]})
        [root] = capture.tree()
        assert root.span.parent is None

    def test_cancelled_task_is_unfinished_not_failed(self, capture: SpanCapture) -> None:
        """A cancelled run ends marked unfinished, with reason "cancelled"."""

        started: list[bool] = []

        async def wait_forever(x: Any) -> Any:
            started.append(True)
            await asyncio.sleep(3600)

        chain = RunnableLambda(lambda x: x) | RunnableLambda(wait_forever)

        async def main() -> None:
            task = asyncio.create_task(chain.ainvoke(1, config={"callbacks": [capture.handler]}))
            while not started:
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert len(capture.spans) == 3
        for span in capture.spans:
            if span.name == "RunnableLambda":
                continue
            attrs = span.attributes or {}
            assert attrs["runspan.unfinished"] is True
            assert attrs["runspan.unfinished.reason"] == "cancelled"
            assert span.status.status_code is StatusCode.UNSET
        assert capture.handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}

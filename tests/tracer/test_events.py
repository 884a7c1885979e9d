"""What happens inside a run becomes span events: custom events, retries, agent actions."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.callbacks.manager import dispatch_custom_event
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from runspan.testing import SpanCapture
from tests.support import assert_matches_langchain


class TestEvents:
    def test_custom_events_land_on_their_run(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """dispatch_custom_event inside a lambda is an event of that lambda's span, with its
        data as JSON."""

        def work(x: int) -> int:
            dispatch_custom_event("progress", {"done": 1, "of": 2})
            return x

        (RunnableLambda(lambda x: x) | RunnableLambda(work)).invoke(
            1, config={"callbacks": [capture.handler, collector]}
        )
        assert_matches_langchain(capture, collector)
        [event] = capture.span("work").events
        assert event.name == "progress"
        assert (event.attributes or {})["data"] == '{"done":1,"of":2}'

    def test_retries_are_events_of_the_retrying_run(self, capture: SpanCapture) -> None:
        """Retries reported with on_retry, as LangChain's model integrations do from tenacity,
        are "retry" events with the attempt and the error."""
        from langchain_core.callbacks import CallbackManagerForChainRun
        from tenacity import Retrying, stop_after_attempt, wait_none

        attempts: list[int] = []

        def flaky() -> str:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError("upstream reset")
            return "ok"

        def call_api(x: int, run_manager: CallbackManagerForChainRun) -> str:
            retrying = Retrying(
                stop=stop_after_attempt(3),
                wait=wait_none(),
                before_sleep=run_manager.on_retry,
                reraise=True,
            )
            return retrying(flaky)

        assert RunnableLambda(call_api).invoke(7, config={"callbacks": [capture.handler]}) == "ok"
        retries = capture.span("call_api").events
        assert [e.name for e in retries] == ["retry", "retry"]
        assert [(e.attributes or {})["retry.attempt"] for e in retries] == [1, 2]
        for event in retries:
            attributes = event.attributes or {}
            assert attributes["exception.type"] == "ConnectionError"
            assert attributes["exception.message"] == "upstream reset"

    def test_agent_actions_and_finish(self, capture: SpanCapture) -> None:
        """An agent's actions and finish are events of the agent's run."""
        handler = capture.handler
        run_id = uuid4()
        handler.on_chain_start({}, {"input": "q"}, run_id=run_id, name="AgentExecutor")
        handler.on_agent_action(
            AgentAction(tool="search", tool_input={"q": "weather"}, log="I should search"),
            run_id=run_id,
        )
        handler.on_agent_finish(
            AgentFinish(return_values={"output": "sunny"}, log=""), run_id=run_id
        )
        handler.on_chain_end({"output": "sunny"}, run_id=run_id)
        span = capture.span("AgentExecutor")
        action, finish = span.events
        assert action.name == "agent_action"
        assert (action.attributes or {})["gen_ai.tool.name"] == "search"
        assert (action.attributes or {})["tool_input"] == '{"q":"weather"}'
        assert finish.name == "agent_finish"
        assert (finish.attributes or {})["return_values"] == '{"output":"sunny"}'

    @pytest.mark.parametrize("capture_content", [False])
    def test_event_content_follows_capture(self, capture_content: bool) -> None:
        """With content capture off, events keep their names but not their data."""
        capture = SpanCapture(capture_content=capture_content)

        def work(x: Any) -> Any:
            dispatch_custom_event("progress", {"secret": "s"})
            return x

        RunnableLambda(work).invoke(1, config={"callbacks": [capture.handler]})
        [event] = capture.span("work").events
        assert event.name == "progress"
        assert "data" not in (event.attributes or {})
        capture.provider.shutdown()

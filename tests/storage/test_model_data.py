"""What the model data says, stored on SQLite and PostgreSQL: time to the first token apart
from time to the first chunk, streamed runs' response id and role, the tools offered to the
model, and tags redacted like content."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from runspan.storage import Run
from tests.storage.conftest import Stored

SECRET = "sk-proj-" + "Q7xZ2mN4pL8rT1vW6yB3cD5fG9hJ0kA2"


class SlowStartModel(BaseChatModel):
    """Streams as many providers do: an empty chunk at once, the text 50 ms later, each chunk
    carrying the provider's response id on the message."""

    first: str = "text"  # or "tool_call": the first content is a tool call's delta

    @property
    def _llm_type(self) -> str:
        return "slow-start-test"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = AIMessage(content="hello", id="chatcmpl-abc123")
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chunks = [AIMessageChunk(content="", id="chatcmpl-abc123")]
        if self.first == "tool_call":
            call = {"name": "add", "args": '{"a": 1', "id": "call_1", "index": 0}
            later = AIMessageChunk(content="", id="chatcmpl-abc123", tool_call_chunks=[call])
        else:
            later = AIMessageChunk(content="hello", id="chatcmpl-abc123")
        chunks.append(later)
        for index, message in enumerate(chunks):
            if index:
                time.sleep(0.05)
            chunk = ChatGenerationChunk(message=message)
            if run_manager:
                run_manager.on_llm_new_token(str(message.content), chunk=chunk)
            yield chunk


def _model_run(stored: Stored) -> Run:
    with stored.store() as store:
        [run] = [run for run in store.runs(limit=10) if run.run_type == "llm"]
    return run


class TestModelData:
    def test_time_to_first_token_waits_for_content(self, stored: Stored) -> None:
        """An empty first chunk sets the time to first chunk, not the time to first token:
        that comes with the text, 50 ms later."""
        for _ in SlowStartModel().stream("hi", config={"callbacks": [stored.handler]}):
            pass
        run = _model_run(stored)
        assert run.first_chunk_ms is not None
        assert run.ttft_ms is not None
        assert run.ttft_ms >= run.first_chunk_ms + 40

    def test_a_tool_call_delta_is_a_first_token(self, stored: Stored) -> None:
        """A model that answers with a tool call has its first token at the call's delta."""
        model = SlowStartModel(first="tool_call")
        for _ in model.stream("add", config={"callbacks": [stored.handler]}):
            pass
        run = _model_run(stored)
        assert run.ttft_ms is not None
        assert run.ttft_ms >= 40

    def test_a_streamed_run_keeps_its_response_id_and_role(self, stored: Stored) -> None:
        """The provider's id rides on streamed messages, and the output is an assistant
        message, not an "AIMessageChunk"."""
        for _ in SlowStartModel().stream("hi", config={"callbacks": [stored.handler]}):
            pass
        run = _model_run(stored)
        assert run.attributes["gen_ai.response.id"] == "chatcmpl-abc123"
        assert [message["role"] for message in run.outputs] == ["assistant"]

    def test_the_tools_offered_are_stored(self, stored: Stored) -> None:
        """bind(tools=...) is stored as gen_ai.tool.definitions, redacted like content."""
        offered = {
            "type": "function",
            "function": {"name": "add", "description": f"adds; key {SECRET}"},
        }
        SlowStartModel().bind(tools=[offered]).invoke("add", config={"callbacks": [stored.handler]})
        definitions = json.loads(_model_run(stored).attributes["gen_ai.tool.definitions"])
        assert definitions[0]["type"] == "function"  # the conventions' shape
        assert definitions[0]["name"] == "add"
        assert SECRET not in json.dumps(definitions)

    def test_tags_are_redacted(self, stored: Stored) -> None:
        """A key passed as a tag is not stored."""
        SlowStartModel().invoke(
            "hi", config={"callbacks": [stored.handler], "tags": ["team:x", f"key:{SECRET}"]}
        )
        tags = _model_run(stored).tags
        assert tags is not None
        assert "team:x" in tags
        assert SECRET not in json.dumps(tags)

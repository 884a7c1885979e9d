"""Content: any input serializes, values are capped and redacted, capture can be switched off,
and a failure inside the handler never reaches the chain."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from typing import Any, NamedTuple

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from pydantic import BaseModel

from runspan.testing import SpanCapture
from runspan.tracer import serialize
from tests.support import fake_chat


class Order(BaseModel):
    item: str
    qty: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def hostile_value() -> dict[str, Any]:
    cycle: dict[str, Any] = {"name": "loop"}
    cycle["self"] = cycle
    return {
        "message": HumanMessage(content="hi"),
        "document": Document(page_content="doc", metadata={"k": 1}),
        "model": Order(item="pear", qty=2),
        "dataclass": Point(1, 2),
        "bytes": b"\x00\x01\x02",
        "set": {3, 1, 2},
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "cycle": cycle,
        "bad_repr": BadRepr(),
    }


class _Pair(NamedTuple):
    left: int
    right: list[float]


class _Ratio(float):
    pass


class _Name(str):
    pass


class _Count(int):
    pass


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _identity_attrs(capture: SpanCapture, value: Any) -> dict[str, Any]:
    RunnableLambda(lambda x: x).invoke(value, config={"callbacks": [capture.handler]})
    [span] = capture.spans
    return dict(span.attributes or {})


class TestSerialization:
    def test_hostile_content_serializes_and_the_result_is_unchanged(
        self, capture: SpanCapture
    ) -> None:
        """Every kind of object becomes JSON; the chain's own result is untouched."""
        value = hostile_value()
        result = RunnableLambda(lambda x: x).invoke(value, config={"callbacks": [capture.handler]})
        assert result is value
        [span] = capture.spans
        attrs = dict(span.attributes or {})
        assert attrs["input.mime_type"] == "application/json"
        data = json.loads(attrs["input.value"])
        assert data["message"] == {"role": "human", "content": "hi"}
        assert data["document"] == {"page_content": "doc", "metadata": {"k": 1}}
        assert data["model"] == {"item": "pear", "qty": 2}
        assert data["dataclass"] == {"x": 1, "y": 2}
        assert data["bytes"] == "<3 bytes>"
        assert data["set"] == [1, 2, 3]
        assert data["when"] == "2026-01-02T03:04:05+00:00"
        assert data["id"] == "12345678-1234-5678-1234-567812345678"
        assert data["cycle"] == {"name": "loop", "self": "[runspan: cycle]"}
        assert data["bad_repr"] == "<unrepresentable BadRepr>"
        assert json.loads(attrs["output.value"]) == data

    @pytest.mark.parametrize(
        "value",
        [
            hostile_value(),
            {"int keys": {1: "a", 2.5: "b", False: "c", None: "d"}, "nested": [[[{"x": ()}]]]},
            [HumanMessage(content="é ✓ 𝄞"), AIMessage(content=[{"type": "text", "text": "t"}])],
            {"big": 10**30, "floats": [0.1, 1e16, -0.0, 1.5e-7], "deep": _nested(300)},
            "plain text",
            {"named": _Pair(1, [2.5]), "float": _Ratio(0.5), "text": _Name("n"), "int": _Count(3)},
        ],
        ids=["hostile", "keys", "messages", "numbers", "text", "subclasses"],
    )
    def test_the_text_does_not_depend_on_the_encoder(
        self, value: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """orjson (where installed) and the standard library's encoder write the same JSON: a
        run's content reads the same on every platform."""
        if serialize._fast is None:
            pytest.skip("orjson is not installed: only the standard library's encoder runs")
        fast = serialize.to_json(value)
        monkeypatch.setattr(serialize, "_fast", None)
        assert json.loads(serialize.to_json(value)) == json.loads(fast)

    @pytest.mark.parametrize("encoder", ["installed", "standard library"])
    def test_nan_and_infinities_are_null(
        self, encoder: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """JSON has no NaN: it is written as null (as JSON.stringify does), by either encoder."""
        if encoder != "installed":
            monkeypatch.setattr(serialize, "_fast", None)
        value = {"score": float("nan"), "range": [float("-inf"), 1.0, float("inf")]}
        assert json.loads(serialize.to_json(value)) == {"score": None, "range": [None, 1.0, None]}

    def test_chat_messages_with_tool_calls(self, capture: SpanCapture) -> None:
        """Messages keep their role, content and tool calls."""
        call = {"name": "add", "args": {"a": 1}, "id": "c1", "type": "tool_call"}
        attrs = _identity_attrs(capture, [AIMessage(content="", tool_calls=[call])])
        [message] = json.loads(attrs["input.value"])
        assert message["role"] == "ai"
        assert message["tool_calls"][0]["id"] == "c1"


class TestCaps:
    def test_long_values_are_cut_with_a_marker_and_the_original_size(self) -> None:
        """A value over the cap is cut, says so, and is marked text/plain."""
        capture = SpanCapture(max_value_chars=1000)
        attrs = _identity_attrs(capture, "x" * 50_000)
        text = attrs["input.value"]
        assert len(text) <= 1000
        assert text.endswith("...[runspan: truncated, 50002 chars in all]")
        assert attrs["input.mime_type"] == "text/plain"
        capture.provider.shutdown()

    def test_bad_settings_fail_when_the_handler_is_built(self) -> None:
        """A nonsensical cap is a ValueError at construction, not a failure per run."""
        with pytest.raises(ValueError, match="max_value_chars"):
            SpanCapture(max_value_chars=0)
        with pytest.raises(ValueError, match="redact"):
            SpanCapture(redact="not callable")


class TestRedaction:
    @pytest.mark.parametrize(
        ("secret", "kept"),
        [
            ("sk-proj-abcdefghijklmnopqrstuvwxyz0123", None),
            ("AKIAIOSFODNN7EXAMPLE", None),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", None),
            ("AIzaSyA1234567890abcdefghijklmnopqrstuv", None),
            ("xoxb-1234567890-abcdefghij", None),
            ("sk_live_51HqLm3Np4Qr5St6Uv7Wx8Yz", None),
            ("rk_test_51HqLm3Np4Qr5St6Uv7Wx8Yz", None),
            ("hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh", None),
            ("gsk_" + "a1B2c3D4e5F6g7H8i9J0" * 3, None),
            ("r8_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh", None),
            ("glpat-AbCdEfGhIjKlMnOpQrSt", None),
            ("Authorization: Bearer abc.def-ghi_jkl", "Bearer [REDACTED]"),
            ("postgresql://app:s3cret@db:5432/runs", "postgresql://app:[REDACTED]@db:5432/runs"),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", None),
        ],
    )
    def test_built_in_patterns(self, capture: SpanCapture, secret: str, kept: str | None) -> None:
        """Common secrets never reach an attribute."""
        attrs = _identity_attrs(capture, {"text": f"use {secret} please"})
        value = attrs["input.value"]
        assert secret not in value
        assert "[REDACTED]" in value
        if kept:
            assert kept in value

    def test_every_marker_holds_the_character_its_group_is_skipped_by(self) -> None:
        """A text is searched for a group's markers only if it holds the group's character, so
        each marker must hold it, or secrets starting with that marker would be missed."""
        from runspan.tracer.redaction import MARKER_GROUPS

        for character, markers in MARKER_GROUPS:
            assert all(character in marker for marker in markers), character

    def test_redaction_hook_applies_to_every_value(self) -> None:
        """The user's hook sees each value after the built-in patterns."""
        capture = SpanCapture(redact=lambda text: text.replace("alice@example.com", "<email>"))
        attrs = _identity_attrs(capture, {"to": "alice@example.com"})
        assert attrs["input.value"] == '{"to":"<email>"}'
        assert attrs["output.value"] == '{"to":"<email>"}'
        capture.provider.shutdown()

    def test_a_failing_hook_withholds_the_value(self) -> None:
        """If the hook raises, the value is withheld rather than sent unredacted."""

        def broken(text: str) -> str:
            raise ValueError("oops")

        capture = SpanCapture(redact=broken)
        attrs = _identity_attrs(capture, {"ssn": "123-45-6789"})
        assert "123-45-6789" not in attrs["input.value"]
        assert "withheld" in attrs["input.value"]
        capture.provider.shutdown()

    def test_tags_are_redacted_on_every_run(self, capture: SpanCapture) -> None:
        """A key passed as a tag is redacted, on the first run with those tags and on those
        after it (which share the redacted tags); other tags are kept as they are."""
        secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
        chain = RunnableLambda(lambda x: x, name="first") | RunnableLambda(lambda x: x)
        for _ in range(3):
            chain.invoke("x", config={"callbacks": [capture.handler], "tags": ["team:a", secret]})
        tags = [span.attributes["langchain.tags"] for span in capture.spans]  # type: ignore[index]
        assert len(tags) == 9
        for found in tags:  # the steps add their seq:step:N
            assert {"team:a", "[REDACTED]"} <= set(found)
        assert secret not in repr(tags)

    def test_a_hook_sees_the_tags_of_every_run(self) -> None:
        """With a hook of the user's, every run's tags go through it (a hook may do anything)."""
        seen: list[str] = []
        capture = SpanCapture(redact=lambda text: seen.append(text) or text.upper())
        for _ in range(3):
            RunnableLambda(lambda x: x).invoke(
                "x", config={"callbacks": [capture.handler], "tags": ["blue"]}
            )
        assert seen.count("blue") == 3
        assert [span.attributes["langchain.tags"] for span in capture.spans] == [("BLUE",)] * 3  # type: ignore[index]
        capture.provider.shutdown()

    def test_the_shared_tags_are_bounded(
        self, capture: SpanCapture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An app that puts a request id in its tags: every run keeps its own tags, and the
        handler holds at most MAX_SHARED_TAGS lists of them."""
        monkeypatch.setattr("runspan.tracer.recorder.MAX_SHARED_TAGS", 3)
        for request in range(10):
            RunnableLambda(lambda x: x).invoke(
                "x", config={"callbacks": [capture.handler], "tags": [f"request:{request}", 7]}
            )
        tags = [span.attributes["langchain.tags"] for span in capture.spans]  # type: ignore[index]
        assert tags == [(f"request:{request}", "7") for request in range(10)]
        assert len(capture.handler._shared_tags) == 3


class TestCaptureOff:
    def test_capture_content_false(self) -> None:
        """capture_content=False keeps inputs, outputs and messages out entirely."""
        capture = SpanCapture(capture_content=False)
        prompt = ChatPromptTemplate.from_template("secret plan {x}")
        (prompt | fake_chat()).invoke({"x": "A"}, config={"callbacks": [capture.handler]})
        for span in capture.spans:
            attrs = dict(span.attributes or {})
            assert not [k for k in attrs if k.startswith(("input.", "output."))]
            assert "secret plan" not in json.dumps(attrs, default=str)
        capture.provider.shutdown()

    def test_environment_variable_switches_capture_off(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false does the same."""
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false")
        capture = SpanCapture()
        attrs = _identity_attrs(capture, {"x": "private"})
        assert "input.value" not in attrs
        capture.provider.shutdown()

    def test_bad_environment_value_is_a_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A typo in the variable fails when the handler is built, naming the variable."""
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "nope")
        with pytest.raises(ValueError, match="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE"):
            SpanCapture()


class TestFailuresInsideTheHandler:
    @pytest.mark.logs_warnings
    def test_a_failing_hook_leaves_the_chain_result_unchanged(
        self,
        capture: SpanCapture,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An exception inside a callback is logged once per interval, never raised."""
        import runspan.tracer.recorder as recorder_module

        def explode(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("serializer bug")

        monkeypatch.setattr(recorder_module, "output_attributes", explode)
        chain = RunnableLambda(lambda x: x * 2) | RunnableLambda(lambda x: x + 1)
        results = [chain.invoke(i, config={"callbacks": [capture.handler]}) for i in range(5)]
        assert results == [1, 3, 5, 7, 9]
        failures = [r for r in caplog.records if "on_chain_end failed" in r.getMessage()]
        assert len(failures) == 1, "rate-limited: one line, not one per run"
        assert capture.handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}
        # the hook failed before it could end the spans; they were not lost on exit
        assert all(s.end_time is not None for s in capture.spans)


def test_logging_uses_the_runspan_logger() -> None:
    """Users can silence or route runspan's messages by the logger name."""
    from runspan.logs import logger

    assert logger is logging.getLogger("runspan")

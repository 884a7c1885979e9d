"""Finished spans wait in runspan's queues compacted: the same values in a handful of objects
the garbage collector tracks, so that a web app's collections stop promoting them."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from enum import Enum
from types import FunctionType, MethodType, ModuleType
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.trace import Link, StatusCode
from sqlalchemy import create_engine, text

from runspan import TracingCallbackHandler
from runspan.compact import CompactingSpanProcessor, compacted
from runspan.provider import build_provider
from runspan.tracer.spans import RunSpan
from tests.support import fake_chat


class Kept(SpanProcessor):
    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


# What every span shares: classes, functions, modules, enum members, the processors.
_SHARED_KINDS = (type, FunctionType, MethodType, ModuleType, Enum, SpanProcessor)


def _tracked_objects(span: ReadableSpan) -> int:
    """The objects the collector tracks that ``span`` keeps alive on its own (its resource and
    scope are shared by every span, as are _SHARED_KINDS)."""
    shared = {id(span.resource), id(span.instrumentation_scope)}
    shared.update(id(o) for o in gc.get_referents(span.resource))
    seen: set[int] = set()
    stack: list[Any] = [span]
    while stack:
        found = stack.pop()
        if (
            id(found) in seen
            or id(found) in shared
            or not gc.is_tracked(found)
            or isinstance(found, _SHARED_KINDS)
        ):
            continue
        seen.add(id(found))
        stack.extend(gc.get_referents(found))
    return len(seen)


@pytest.fixture
def kept() -> Iterator[tuple[TracerProvider, Kept]]:
    """An SDK provider (the spans of FastAPI's and other instrumentations) whose spans reach
    ``Kept`` through the compacting processor, as runspan's queues get them."""
    provider = TracerProvider(span_limits=SpanLimits(max_attributes=8))
    queued = CompactingSpanProcessor()
    kept = Kept()
    queued.add_span_processor(kept)
    provider.add_span_processor(queued)
    yield provider, kept
    provider.shutdown()


def _request_span(provider: TracerProvider) -> ReadableSpan:
    tracer = provider.get_tracer("fastapi")
    with tracer.start_as_current_span("GET /ask") as parent:
        span = tracer.start_span("http send", links=[Link(parent.get_span_context())])
        span.set_attributes({"http.route": "/ask", "http.status_code": 500, "tags": ("a", "b")})
        span.add_event("retry", {"attempt": 2})
        span.set_status(StatusCode.ERROR, "upstream failed")
        span.end()
    assert isinstance(span, ReadableSpan)
    return span


def test_a_queued_span_keeps_every_value_in_a_few_tracked_objects(
    kept: tuple[TracerProvider, Kept],
) -> None:
    provider, queued = kept
    original = _request_span(provider)
    small = queued.ended[0]
    assert small is not original
    for field in ("name", "context", "parent", "kind", "start_time", "end_time", "resource"):
        assert getattr(small, field) == getattr(original, field), field
    assert dict(small.attributes or {}) == dict(original.attributes or {})
    assert small.status.status_code is StatusCode.ERROR
    assert small.status.description == "upstream failed"
    assert [(e.name, dict(e.attributes or {})) for e in small.events] == [("retry", {"attempt": 2})]
    assert [link.context for link in small.links] == [link.context for link in original.links]
    assert small.instrumentation_scope == original.instrumentation_scope
    gc.collect()  # what a young collection does: tuples and dicts of plain values are let go
    # The SDK's span holds locks and bounded containers (27 tracked objects with SDK 1.45); the
    # compact one its span, contexts, status, event and link.
    assert _tracked_objects(small) <= 12
    assert _tracked_objects(small) <= _tracked_objects(original) // 2


def test_a_span_that_dropped_attributes_is_queued_as_it_is(
    kept: tuple[TracerProvider, Kept],
) -> None:
    """Its dropped count is what the OTLP export reports: it must not be lost."""
    provider, queued = kept
    span = provider.get_tracer("app").start_span("wide")
    span.set_attributes({f"key.{n}": n for n in range(12)})
    span.end()
    (ended,) = queued.ended
    assert ended.dropped_attributes == 4


def test_a_span_that_cannot_be_compacted_is_queued_whole(
    kept: tuple[TracerProvider, Kept], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, queued = kept

    def broken(span: ReadableSpan) -> ReadableSpan:
        raise RuntimeError("boom")

    monkeypatch.setattr("runspan.compact.compacted", broken)
    span = provider.get_tracer("app").start_span("kept anyway")
    span.end()  # never raises into the app
    assert [s.name for s in queued.ended] == ["kept anyway"]


def test_runs_and_app_spans_reach_the_database_whole(database_url: str) -> None:
    """Through runspan's own provider: both queues get the compacted spans, and every value
    lands in SQL (on both databases)."""
    provider = build_provider("svc", database_url=database_url)
    try:
        tracer = provider.get_tracer("fastapi")
        handler = TracingCallbackHandler(tracer_provider=provider)
        with tracer.start_as_current_span("GET /ask", attributes={"http.route": "/ask"}) as span:
            span.add_event("request body read", {"bytes": 12})
            fake_chat().invoke("hi", config={"callbacks": [handler]})
        assert provider.force_flush()
    finally:
        provider.shutdown()
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT name, run_type, attributes, events FROM runs")
            ).all()
    finally:
        engine.dispose()
    by_name = {row.name: row for row in rows}
    assert set(by_name) == {"GET /ask", "GenericFakeChatModel"}
    assert "/ask" in str(by_name["GET /ask"].attributes)
    assert "request body read" in str(by_name["GET /ask"].events)
    assert by_name["GenericFakeChatModel"].run_type == "llm"


def test_compacted_copies_plain_values_only() -> None:
    """The attributes become a plain dict the span no longer shares with the live span."""
    provider = TracerProvider()
    span = provider.get_tracer("app").start_span("x", attributes={"a": 1})
    span.end()
    assert isinstance(span, ReadableSpan)
    small = compacted(span)
    assert type(small._attributes) is dict
    assert small.attributes == {"a": 1}
    provider.shutdown()


def test_a_runs_span_is_compact_already_and_queued_as_it_is() -> None:
    """No copy on the callback path where there is nothing to gain."""
    provider = TracerProvider()
    queued = CompactingSpanProcessor()
    kept = Kept()
    queued.add_span_processor(kept)
    provider.add_span_processor(queued)
    handler = TracingCallbackHandler(tracer_provider=provider)
    fake_chat().invoke("hi", config={"callbacks": [handler]})
    provider.shutdown()
    (span,) = kept.ended
    assert type(span) is RunSpan
    gc.collect()
    assert _tracked_objects(span) <= 8

"""Stored runs as spans again: what ``runspan export`` replays and ``runspan serve`` answers.

A rebuilt span has the stored run's trace id, span id, parent, name, kind, times, status,
attributes and events, so a receiver shows the same trace whether it came live or from SQL. The
attributes that the writer moved into columns (run ids, run type, tags, metadata, token counts,
times to the first chunk and token, inputs and outputs, why a run did not finish, LangGraph's
node, attempt and resumed trace) are put back under the names the tracer gave them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from runspan.attributes import (
    COLUMNS,
    CONTENT_BY_RUN_TYPE,
    INPUT_MIME_TYPE,
    INPUT_VALUE,
    JSON_MIME,
    METADATA,
    OUTPUT_MIME_TYPE,
    OUTPUT_VALUE,
    TAGS,
    TEXT_MIME,
    TIME_TO_FIRST_CHUNK,
    TIME_TO_FIRST_TOKEN,
)
from runspan.storage.records import Run

_SCOPE = InstrumentationScope("runspan.replay")
_KINDS = {kind.name.lower(): kind for kind in SpanKind}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# The end of a value the tracer cut (runspan.tracer.content.capped).
_CUT_BY_TRACER = re.compile(r"\.\.\.\[runspan: truncated, \d+ chars in all\]\Z")


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _attribute_value(value: Any) -> Any:
    """A JSON value back as an attribute value: lists were tuples."""
    if isinstance(value, list):
        return tuple(value)
    return value


def _content(value: Any, value_key: str, mime_key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str) and _CUT_BY_TRACER.search(value):
        # Content the tracer cut at its cap was sent as text, not JSON, and stored as a string.
        return {value_key: value, mime_key: TEXT_MIME}
    return {value_key: _json_text(value), mime_key: JSON_MIME}


# How a column's value goes back into its attribute, where the row builder converted it.
_FROM_COLUMN: dict[str, Callable[[Any], Any]] = {
    TAGS: tuple,
    METADATA: _json_text,
    # Seconds to the nanosecond, as measured: undoes the float error of ms and back.
    TIME_TO_FIRST_CHUNK: lambda ms: round(ms / 1000.0, 9),
    TIME_TO_FIRST_TOKEN: lambda ms: round(ms / 1000.0, 9),
}
_CONTENT = {INPUT_VALUE: INPUT_MIME_TYPE, OUTPUT_VALUE: OUTPUT_MIME_TYPE}


def _genai_text(value: Any) -> str:
    """A GenAI content attribute from its column: JSON text, or the text itself when the
    tracer sent plain text (a tool's string result, a query)."""
    return value if isinstance(value, str) else _json_text(value)


def _as_genai(run: Run) -> tuple[str, str] | None:
    """The GenAI names a run's content goes back under, if the run's type has them and its
    stored content has their shape (a model run stored before runspan wrote them does not)."""
    names = CONTENT_BY_RUN_TYPE.get(run.run_type or "")
    if names is None:
        return None
    if run.run_type == "llm":
        sample = run.inputs if run.inputs is not None else run.outputs
        if not (
            isinstance(sample, list)
            and all(isinstance(m, Mapping) and "parts" in m for m in sample)
        ):
            return None
    return names


def _attributes(run: Run) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if isinstance(run.attributes, Mapping):
        attributes.update((k, _attribute_value(v)) for k, v in run.attributes.items())
    genai = _as_genai(run)
    for name, column in COLUMNS.items():
        value = getattr(run, column)
        if value is None:
            continue
        if genai is not None and name in _CONTENT:
            attributes[genai[0] if name == INPUT_VALUE else genai[1]] = _genai_text(value)
        elif name in _CONTENT:
            attributes.update(_content(value, name, _CONTENT[name]))
        else:
            convert = _FROM_COLUMN.get(name)
            attributes[name] = convert(value) if convert is not None else value
    return attributes


def _events(run: Run) -> list[Event]:
    if not isinstance(run.events, list):
        return []
    return [
        Event(
            str(event.get("name", "")),
            {k: _attribute_value(v) for k, v in (event.get("attributes") or {}).items()},
            event.get("time_ns"),
        )
        for event in run.events
        if isinstance(event, Mapping)
    ]


class Resources:
    """One resource per service name, shared by its spans."""

    def __init__(self) -> None:
        self._made: dict[str | None, Resource] = {}

    def __call__(self, service_name: str | None) -> Resource:
        resource = self._made.get(service_name)
        if resource is None:
            attributes = {SERVICE_NAME: service_name} if service_name else {}
            resource = self._made[service_name] = Resource(attributes)
        return resource


def stored_span(run: Run, resource: Resource) -> ReadableSpan:
    """The span of a finished stored run."""
    trace_id = int(run.trace_id, 16)
    context = SpanContext(trace_id, int(run.span_id, 16), is_remote=False, trace_flags=_SAMPLED)
    parent = (
        SpanContext(trace_id, int(run.parent_span_id, 16), is_remote=False, trace_flags=_SAMPLED)
        if run.parent_span_id
        else None
    )
    status = (
        Status(StatusCode.ERROR, run.error_message)
        if run.status in ("error", "retried")  # a retried attempt failed
        else Status(StatusCode.UNSET)
    )
    return ReadableSpan(
        name=run.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=_attributes(run),
        events=_events(run),
        kind=_KINDS.get(run.span_kind, SpanKind.INTERNAL),
        status=status,
        start_time=run.start_ns,
        end_time=run.end_ns,
        instrumentation_scope=_SCOPE,
    )

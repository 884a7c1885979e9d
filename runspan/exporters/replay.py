"""Stored runs back into spans, and sent over OTLP: ``runspan export``.

A replayed span has the stored run's trace id, span id, parent, name, kind, times, status,
attributes and events, so a receiver shows the same trace whether it came live or replayed, and
a span replayed twice is one span to Jaeger (same ids). The attributes that the writer moved into
columns (run ids, run type, tags, metadata, token counts, time to first chunk, inputs and
outputs, why a run did not finish, LangGraph's node, attempt and resumed trace) are put back
under the names the tracer gave them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
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
from runspan.storage import Run, RunStore

# How many traces, or runs, are read and their spans sent at a time.
TRACES_PER_STEP = 200
PAGE_SIZE = 1000

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


class _Resources:
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


@dataclass
class Replayed:
    """What a replay did."""

    traces: int = 0  # traces with at least one span sent
    spans: int = 0
    running: int = 0  # runs with no end yet: not sent, since a span needs one
    failed: int = 0  # spans of the step the receiver did not take; the replay stopped there


def window_pages(
    store: RunStore, since: int | None, until: int | None, page_size: int = PAGE_SIZE
) -> Iterator[list[Run]]:
    """The runs that ended in ``[since, until]``, a page at a time, in end order."""
    after: tuple[int, str, str] | None = None
    while True:
        page = store.ended_runs(since, until, after=after, limit=page_size)
        if not page:
            return
        yield page
        last = page[-1]
        assert last.end_ns is not None
        after = (last.end_ns, last.trace_id, last.span_id)


def trace_pages(store: RunStore, trace_ids: Sequence[str]) -> Iterator[list[Run]]:
    """Every run of these traces, running ones included, a few hundred traces at a time."""
    for start in range(0, len(trace_ids), TRACES_PER_STEP):
        yield store.runs_of_traces(trace_ids[start : start + TRACES_PER_STEP])


def replay_runs(
    pages: Iterable[Sequence[Run]],
    exporter: SpanExporter,
    *,
    progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Send every finished run of ``pages`` to ``exporter``, a page per export; stops at the
    first page the receiver does not take. ``progress`` is told how many runs each page had."""
    result = Replayed()
    resources = _Resources()
    traces: set[str] = set()
    for page in pages:
        spans = []
        for run in page:
            if run.end_ns is None:
                result.running += 1
            else:
                spans.append(stored_span(run, resources(run.service_name)))
        if spans and exporter.export(spans) is not SpanExportResult.SUCCESS:
            result.failed += len(spans)
            break  # the receiver is down or refuses: say so rather than try every page
        result.spans += len(spans)
        traces.update(span.trace_id for span in page if span.end_ns is not None)
        if progress is not None:
            progress(len(page))
    result.traces = len(traces)
    return result

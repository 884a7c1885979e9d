"""Starting run spans: directly on an SDK provider, or through any OpenTelemetry API tracer.

On an SDK provider (runspan's own, or the application's) a run's span is a :class:`RunSpan`:
the SDK's sampler, resource, id generator and span processors are used as the SDK's own tracer
uses them, but the attributes runspan sets, which it has already made valid, skip the SDK's
per-attribute locking and validation. That halves the cost of a span, and a span per run is most
of what tracing costs. Spans of any other provider come from its tracer's ``start_span``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import Attributes, AttributeValue

from runspan.attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_EVENT,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from runspan.tracer.errors import type_name
from runspan.tracer.ids import RunIdGenerator, trace_id_of

# The SDK's default limits, applied to what code other than runspan adds to a run's span.
_MAX_ATTRIBUTES = 128
_MAX_EVENTS = 128
_MAX_LINKS = 128
_PRIMITIVES = (str, bool, int, float)
# SpanContext builds a new empty TraceState whenever it is given none; share one. The flags too:
# an object made per trace would live as long as its spans (see RunRecorder._tags).
_NO_TRACE_STATE = TraceState()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


def _valid_value(value: object) -> AttributeValue | None:
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        # OpenTelemetry allows sequences of one primitive type only.
        items = tuple(value)
        kind = type(items[0]) if items else str
        if kind in _PRIMITIVES and all(type(item) is kind for item in items):
            return items
    return None


def _valid_attributes(attributes: Attributes) -> dict[str, AttributeValue]:
    valid: dict[str, AttributeValue] = {}
    for key, value in (attributes or {}).items():
        checked = _valid_value(value)
        if isinstance(key, str) and key and checked is not None:
            valid[key] = checked
    return valid


class RunSpan(sdk_trace.Span):
    """A run's span on an SDK provider, recorded without the SDK span's per-call overhead.

    It is an SDK ``Span`` to every span processor and exporter, and an API span while open.
    runspan records its own attributes with :meth:`record`; anything else that gets hold of the
    span (a span processor's ``on_start``, application code calling ``get_current_span()`` inside
    a run) uses the validated API methods, within the SDK's default limits. The SDK's own
    constructor is skipped on purpose: it builds locks and bounded containers per span that
    runspan, which ends each span from one place, does not need.
    """

    def __init__(
        self,
        name: str,
        context: SpanContext,
        *,
        parent: SpanContext | None,
        resource: Any,
        attributes: dict[str, AttributeValue],
        kind: SpanKind,
        start_time: int,
        scope: InstrumentationScope,
        processor: sdk_trace.SpanProcessor,
    ) -> None:
        ReadableSpan.__init__(  # not sdk_trace.Span.__init__: see the class docstring
            self,
            name=name,
            context=context,
            parent=parent,
            resource=resource,
            attributes=attributes,
            events=(),  # most runs have none: a list is made at the first one
            links=(),
            kind=kind,
            start_time=start_time,
            instrumentation_scope=scope,
        )
        self._processor = processor

    # What the SDK span's __exit__ reads; class-wide, since runspan never changes them.
    _record_exception = True
    _set_status_on_exception = True

    def __repr__(self) -> str:
        return f"RunSpan(name={self._name!r}, context={self._context})"

    def _readable_span(self) -> ReadableSpan:
        return self

    def start(self, start_time: int | None = None, parent_context: Context | None = None) -> None:
        """Runs start when runspan creates them; there is nothing more to start."""

    # What runspan itself records: already valid, so no checks beyond "still open".
    def record(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self._end_time is None:
            self._attributes.update(attributes)  # type: ignore[union-attr]

    # The OpenTelemetry API, for everyone else.
    def get_span_context(self) -> SpanContext:
        assert self._context is not None
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self._end_time is not None:
            return
        current: dict[str, AttributeValue] = self._attributes  # type: ignore[assignment]
        for key, value in _valid_attributes(attributes).items():
            if key in current or len(current) < _MAX_ATTRIBUTES:
                current[key] = value

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is not None or len(self._events) >= _MAX_EVENTS:
            return
        if not isinstance(self._events, list):
            self._events = []
        self._events.append(Event(name, _valid_attributes(attributes), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if self._end_time is not None or not context.is_valid or len(self._links) >= _MAX_LINKS:
            return
        if not isinstance(self._links, list):
            self._links = []
        self._links.append(Link(context, _valid_attributes(attributes)))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As in the SDK: OK is final, UNSET changes nothing.
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        stack = "".join(
            traceback.format_exception(type(exception), exception, exception.__traceback__)
        )
        event: dict[str, AttributeValue] = {
            EXCEPTION_TYPE: type_name(exception),
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: stack,
            EXCEPTION_ESCAPED: str(escaped),
        }
        event.update(_valid_attributes(attributes))
        self.add_event(EXCEPTION_EVENT, event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time if end_time is not None else time.time_ns()
        self._processor.on_end(self)


class SpanStarter(Protocol):
    def start(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        *,
        start_ns: int,
        run_id: UUID,
        parent_run_span: trace_api.Span | None,
        root_context: Context | None,
        span_ids: set[int],
    ) -> trace_api.Span:
        """Start a run's span: under ``parent_run_span`` if it has a parent run, else under
        whatever span ``root_context`` holds (none, for a new trace). ``span_ids`` holds the
        span ids of the LangChain trace so far; the new span's is added, never one of them."""


def _ignores_trace_ids(sampler: Sampler) -> bool:
    """Whether ``sampler`` decides without reading trace ids, as the SDK's default does.

    Ratio samplers read the low 64 bits of a trace id as a uniform random number. A UUID's are
    not uniform (its variant bits sit at the top of them), so under such a sampler a root's trace
    id must stay random: it is then not its run id, which ``langchain.run_id`` still carries.
    Samplers runspan does not recognize are treated the same way.
    """
    description = sampler.get_description()
    constant = ("AlwaysOnSampler", "AlwaysOffSampler")
    if description in constant:
        return True
    return any(description.startswith(f"ParentBased{{root:{root},") for root in constant)


class SdkSpanStarter:
    """Starts :class:`RunSpan` objects with an SDK tracer's sampler, ids and processors."""

    def __init__(self, tracer: sdk_trace.Tracer, scope: InstrumentationScope) -> None:
        self._sampler = tracer.sampler
        self._resource = tracer.resource
        self._processor = tracer.span_processor
        self._ids = tracer.id_generator
        self._run_trace_ids = isinstance(tracer.id_generator, RunIdGenerator) and (
            _ignores_trace_ids(tracer.sampler)
        )
        self._scope = scope

    def start(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        *,
        start_ns: int,
        run_id: UUID,
        parent_run_span: trace_api.Span | None,
        root_context: Context | None,
        span_ids: set[int],
    ) -> trace_api.Span:
        parent: SpanContext | None
        if parent_run_span is not None:
            parent = parent_run_span.get_span_context()
        else:
            parent = trace_api.get_current_span(root_context).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = trace_id_of(run_id) if self._run_trace_ids else self._ids.generate_trace_id()
        else:
            trace_id = parent.trace_id
        # Random, and unique within the LangChain trace however its run ids were made.
        span_id = self._ids.generate_span_id()
        while span_id in span_ids or span_id == trace_api.INVALID_SPAN_ID:
            span_id = self._ids.generate_span_id()
        span_ids.add(span_id)
        if parent is not None and parent_run_span is not None:
            # A run inherits its parent run's decision, as under the SDK's default ParentBased
            # sampler, so that a sampled chain is never missing a step.
            flags = parent.trace_flags
            trace_state: TraceState | None = parent.trace_state
            recording = parent.trace_flags.sampled
        else:
            sampling = self._sampler.should_sample(root_context, trace_id, name, kind, attributes)
            decision = sampling.decision
            sampled = decision is Decision.RECORD_AND_SAMPLE
            flags = _SAMPLED if sampled else _NOT_SAMPLED
            trace_state = sampling.trace_state or _NO_TRACE_STATE
            recording = sampled or decision is Decision.RECORD_ONLY
            if recording and sampling.attributes:
                attributes.update(sampling.attributes)
        context = SpanContext(
            trace_id, span_id, is_remote=False, trace_flags=flags, trace_state=trace_state
        )
        if not recording:
            return trace_api.NonRecordingSpan(context)
        span = RunSpan(
            name,
            context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=kind,
            start_time=start_ns,
            scope=self._scope,
            processor=self._processor,
        )
        self._processor.on_start(span, parent_context=root_context)
        return span


class ApiSpanStarter:
    """Starts spans through any OpenTelemetry API tracer."""

    def __init__(self, tracer: trace_api.Tracer) -> None:
        self._tracer = tracer

    def start(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        *,
        start_ns: int,
        run_id: UUID,
        parent_run_span: trace_api.Span | None,
        root_context: Context | None,
        span_ids: set[int],
    ) -> trace_api.Span:
        # The provider's tracer picks the span id: uniqueness is as its id generator makes it.
        if parent_run_span is not None:
            root_context = trace_api.set_span_in_context(parent_run_span, Context())
        return self._tracer.start_span(
            name, context=root_context, kind=kind, attributes=attributes, start_time=start_ns
        )


def starter_for(provider: trace_api.TracerProvider, version: str) -> SpanStarter:
    """The fastest correct way to start spans on ``provider``."""
    tracer = provider.get_tracer("runspan", version)
    if isinstance(tracer, sdk_trace.Tracer):
        return SdkSpanStarter(tracer, InstrumentationScope("runspan", version))
    return ApiSpanStarter(tracer)


def record(span: trace_api.Span, attributes: Mapping[str, AttributeValue]) -> None:
    """Set runspan's own, already valid, attributes on a run's span."""
    if isinstance(span, RunSpan):
        span.record(attributes)
    elif attributes:
        span.set_attributes(attributes)

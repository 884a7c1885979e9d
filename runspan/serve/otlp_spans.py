"""OTLP trace requests as the SDK's finished spans, for the same row builder as the app's own.

A span whose ids are not OTLP's 16 and 8 bytes (or are all zero) is rejected and counted, as
OTLP's partial success has it; the rest of its request is kept. Attribute values come back as the
SDK holds them: scalars, and tuples for arrays; a value of a kind span attributes cannot hold (a
key-value list, bytes) is kept as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# OTLP's kinds count from SPAN_KIND_UNSPECIFIED = 0; the SDK's from INTERNAL = 0.
_KINDS = {0: SpanKind.INTERNAL, 1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT}
_KINDS |= {4: SpanKind.PRODUCER, 5: SpanKind.CONSUMER}
_STATUS = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}


@dataclass
class DecodedRequest:
    """The spans of one request, and what was rejected from it and why."""

    spans: list[ReadableSpan] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if reason not in self.reasons:
            self.reasons.append(reason)


def _plain(value: AnyValue) -> Any:
    """An AnyValue as plain Python data (for JSON text of nested values)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def attribute_value(value: AnyValue) -> Any:
    """An AnyValue as an SDK attribute value, or None for an empty one."""
    kind = value.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, kind)
    if kind == "array_value":
        items = [_plain(item) for item in value.array_value.values]
        if all(isinstance(item, (str, bool, int, float)) for item in items):
            return tuple(items)
        return json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    if kind in ("kvlist_value", "bytes_value"):
        return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"))
    return None


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        # Strings first and inline: most attributes are strings, and this runs for each one.
        value = pair.value
        if value.WhichOneof("value") == "string_value":
            found[pair.key] = value.string_value
            continue
        converted = attribute_value(value)
        if converted is not None:
            found[pair.key] = converted
    return found


def _span_id(raw: bytes) -> int | None:
    return int.from_bytes(raw, "big") or None if len(raw) == 8 else None


def _status(code: int, message: str) -> Status:
    status = _STATUS.get(code, StatusCode.UNSET)
    # Only an error has a description (the SDK warns about any other).
    return Status(status, message or None) if status is StatusCode.ERROR else Status(status)


def decode(request: ExportTraceServiceRequest) -> DecodedRequest:
    """The finished spans of an OTLP trace request."""
    decoded = DecodedRequest()
    for resource_spans in request.resource_spans:
        resource = Resource(attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version or None)
            for span in scope_spans.spans:
                trace_id = int.from_bytes(span.trace_id, "big") if len(span.trace_id) == 16 else 0
                span_id = _span_id(span.span_id)
                if not trace_id or span_id is None:
                    decoded.reject("a span's trace_id or span_id is not a valid OTLP id")
                    continue
                if span.parent_span_id and _span_id(span.parent_span_id) is None:
                    decoded.reject("a span's parent_span_id is not a valid OTLP id")
                    continue
                if not span.start_time_unix_nano:
                    decoded.reject("a span has no start time")
                    continue
                parent_id = _span_id(span.parent_span_id) if span.parent_span_id else None
                decoded.spans.append(
                    ReadableSpan(
                        name=span.name,
                        context=SpanContext(trace_id, span_id, False, _SAMPLED),
                        parent=(
                            SpanContext(trace_id, parent_id, True, _SAMPLED)
                            if parent_id is not None
                            else None
                        ),
                        resource=resource,
                        attributes=attributes(span.attributes),
                        events=[
                            Event(event.name, attributes(event.attributes), event.time_unix_nano)
                            for event in span.events
                        ],
                        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
                        status=_status(span.status.code, span.status.message),
                        start_time=span.start_time_unix_nano,
                        # A span without an end is stored as still running.
                        end_time=span.end_time_unix_nano or None,
                        instrumentation_scope=scope,
                    )
                )
    return decoded

"""Stored traces in the JSON shapes of Jaeger's query HTTP API.

Two shapes, as Jaeger's own query service writes them: the UI's model (``/api/...``: traces of
spans with microsecond times, typed tags, logs and a process table; Jaeger's ``uimodel``), and
API v3's OTLP JSON (``/api/v3/...``: ``{"result": {"resourceSpans": ...}}`` with hex ids and
enums as numbers). Spans are mapped to the UI's model as Jaeger maps OTLP: span kind, status and
scope become tags, events become logs, the resource becomes the process.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from runspan.attributes import SERVICE_NAME
from runspan.serve.otlp_json import convert_ids

_JS_MAX_SAFE_INTEGER = 2**53 - 1
_KIND_TAGS = {
    SpanKind.CLIENT: "client",
    SpanKind.SERVER: "server",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
    SpanKind.INTERNAL: "internal",
}


def _tag(key: str, value: Any) -> dict[str, Any]:
    """A typed tag as the UI's model has it (arrays as JSON text, big ints as strings)."""
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        shown: Any = value if abs(value) <= _JS_MAX_SAFE_INTEGER else str(value)
        return {"key": key, "type": "int64", "value": shown}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, bytes):
        return {"key": key, "type": "binary", "value": base64.b64encode(value).decode()}
    if isinstance(value, (tuple, list)):
        text = json.dumps(list(value), ensure_ascii=False)
        return {"key": key, "type": "string", "value": text}
    return {"key": key, "type": "string", "value": str(value)}


def _span_tags(span: ReadableSpan) -> list[dict[str, Any]]:
    tags = [_tag(key, value) for key, value in (span.attributes or {}).items()]
    scope = span.instrumentation_scope
    if scope is not None and scope.name:
        tags.append(_tag("otel.scope.name", scope.name))
        if scope.version:
            tags.append(_tag("otel.scope.version", scope.version))
    kind = _KIND_TAGS.get(span.kind)
    if kind is not None:
        tags.append(_tag("span.kind", kind))
    status = span.status
    if status.status_code is StatusCode.ERROR:
        tags.append(_tag("error", True))
        tags.append(_tag("otel.status_code", "ERROR"))
        if status.description:
            tags.append(_tag("otel.status_description", status.description))
    elif status.status_code is StatusCode.OK:
        tags.append(_tag("otel.status_code", "OK"))
    return tags


def ui_trace(trace_id: str, spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """One trace in the UI's model: spans, and a process per distinct resource."""
    processes: dict[str, dict[str, Any]] = {}
    keys: dict[tuple[tuple[str, Any], ...], str] = {}
    shown = []
    for span in spans:
        resource = dict(span.resource.attributes) if span.resource is not None else {}
        identity = tuple(sorted((k, str(v)) for k, v in resource.items()))
        process_id = keys.get(identity)
        if process_id is None:
            process_id = keys[identity] = f"p{len(keys) + 1}"
            service = resource.pop(SERVICE_NAME, "")
            processes[process_id] = {
                "serviceName": str(service),
                "tags": [_tag(key, value) for key, value in resource.items()],
            }
        span_id = span.context.span_id if span.context is not None else 0
        start = (span.start_time or 0) // 1000
        end = (span.end_time or span.start_time or 0) // 1000
        references = []
        if span.parent is not None:
            references.append(
                {
                    "refType": "CHILD_OF",
                    "traceID": trace_id,
                    "spanID": f"{span.parent.span_id:016x}",
                }
            )
        for link in span.links:
            references.append(
                {
                    "refType": "FOLLOWS_FROM",
                    "traceID": f"{link.context.trace_id:032x}",
                    "spanID": f"{link.context.span_id:016x}",
                }
            )
        shown.append(
            {
                "traceID": trace_id,
                "spanID": f"{span_id:016x}",
                "flags": 1,
                "operationName": span.name,
                "references": references,
                "startTime": start,
                "duration": max(0, end - start),
                "tags": _span_tags(span),
                "logs": [
                    {
                        "timestamp": event.timestamp // 1000,
                        "fields": [
                            _tag("event", event.name),
                            *(_tag(k, v) for k, v in (event.attributes or {}).items()),
                        ],
                    }
                    for event in span.events
                ],
                "processID": process_id,
                "warnings": None,
            }
        )
    return {"traceID": trace_id, "spans": shown, "processes": processes, "warnings": None}


def otlp_json(traces: Iterable[Sequence[ReadableSpan]]) -> dict[str, Any]:
    """Traces as API v3 answers them: ``{"result": TracesData}`` in OTLP's JSON."""
    combined = TracesData()
    for spans in traces:
        if spans:
            combined.resource_spans.extend(encode_spans(spans).resource_spans)
    result = json_format.MessageToDict(combined, use_integers_for_enums=True)
    convert_ids(result, lambda value: base64.b64decode(value).hex())
    return {"result": result}

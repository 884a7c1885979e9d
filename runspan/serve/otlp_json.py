"""OTLP/JSON trace requests as protobuf messages.

OTLP's JSON mapping is protobuf's, but for two things: trace and span ids are hex strings (not
base64), and enums may be integers. The ids are turned into protobuf's form here; the rest,
lowerCamelCase names and 64-bit integers as strings included, protobuf's own parser reads.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class InvalidRequest(ValueError):
    """A request body that is not an OTLP trace request."""


def _ids_as_base64(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _ids_as_base64(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise InvalidRequest(f"{key} {value!r} is not hex") from None
            else:
                _ids_as_base64(value)


def parse_request(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON body as an export request."""
    try:
        data = json.loads(body)
    except ValueError as error:
        raise InvalidRequest(f"the body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body is not a JSON object")
    _ids_as_base64(data)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise InvalidRequest(f"not an OTLP trace request: {error}") from None
    return request


def response_json(response: ExportTraceServiceResponse) -> bytes:
    text: str = json_format.MessageToJson(response, indent=None)
    return text.encode()

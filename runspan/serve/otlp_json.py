"""OTLP/JSON trace requests as protobuf messages.

OTLP's JSON mapping is protobuf's, but for two things: trace and span ids are hex strings (not
base64), and enums may be integers. The ids are turned into protobuf's form here; the rest,
lowerCamelCase names and 64-bit integers as strings included, protobuf's own parser reads.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class InvalidRequest(ValueError):
    """A request body that is not an OTLP trace request."""


def convert_ids(node: Any, convert: Callable[[str], str]) -> None:
    """Apply ``convert`` to every trace and span id in a JSON document, in place (OTLP's JSON
    writes them in hex, protobuf's JSON mapping in base64)."""
    if isinstance(node, list):
        for item in node:
            convert_ids(item, convert)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = convert(value)
            else:
                convert_ids(value, convert)


def _hex_to_base64(value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise InvalidRequest(f"an id {value!r} is not hex") from None


def parse_request(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON body as an export request."""
    try:
        data = json.loads(body)
    except ValueError as error:
        raise InvalidRequest(f"the body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body is not a JSON object")
    convert_ids(data, _hex_to_base64)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise InvalidRequest(f"not an OTLP trace request: {error}") from None
    return request


def response_json(response: ExportTraceServiceResponse) -> bytes:
    text: str = json_format.MessageToJson(response, indent=None)
    return text.encode()

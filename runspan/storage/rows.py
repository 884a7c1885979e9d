"""One span as one ``runs`` row.

The row's columns are read from the span's attributes by the names the tracer writes
(OpenTelemetry GenAI conventions, ``langchain.*``, ``input.value``/``output.value``); what has
no column of its own stays in ``attributes``. Spans of other instrumentations become rows too,
with no run id. JSON columns are handed over as JSON text, and every JSON text written here is
valid JSON: content the tracer cut at its cap (no longer JSON) is stored as a JSON string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from runspan.storage.schema import runs

RowValues = dict[str, Any]

# Attribute names, as the tracer writes them (runspan.tracer); storage does not import the
# tracer, whose spans are one producer among others.
_RUN_ID = "langchain.run_id"
_PARENT_RUN_ID = "langchain.parent_run_id"
_RUN_TYPE = "langchain.run_type"
_TAGS = "langchain.tags"
_METADATA = "langchain.metadata"
_UNFINISHED = "runspan.unfinished"
_INPUT = "input.value"
_INPUT_MIME = "input.mime_type"
_OUTPUT = "output.value"
_OUTPUT_MIME = "output.mime_type"
_JSON_MIME = "application/json"
_SERVICE_NAME = "service.name"

# Columns read straight from a numeric attribute.
_TOKEN_COLUMNS = {
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cache_read_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_creation_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
}
_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # seconds
_RESPONSE_MODEL = "gen_ai.response.model"
_REQUEST_MODEL = "gen_ai.request.model"
_PROVIDER = "gen_ai.provider.name"
_LEGACY_PROVIDER = "gen_ai.system"
_ERROR_TYPE = "error.type"

# Attributes that have their own column (or are the mime type of one) and are not repeated in
# ``attributes``.
_IN_COLUMNS = frozenset(
    {
        _RUN_ID,
        _PARENT_RUN_ID,
        _RUN_TYPE,
        _TAGS,
        _METADATA,
        _INPUT,
        _INPUT_MIME,
        _OUTPUT,
        _OUTPUT_MIME,
        _TIME_TO_FIRST_CHUNK,
        *_TOKEN_COLUMNS.values(),
    }
)

_STATUS = {StatusCode.ERROR: "error", StatusCode.OK: "ok", StatusCode.UNSET: "ok"}

COLUMNS = tuple(column.name for column in runs.columns if column.name != "id")

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def hex_trace_id(trace_id: int) -> str:
    return f"{trace_id:032x}"


def hex_span_id(span_id: int) -> str:
    return f"{span_id:016x}"


def _json_value(value: Any) -> Any:
    """An attribute value in JSON terms: tuples as lists, non-finite floats as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value


def _content(text: Any, mime: Any) -> str | None:
    """``input.value``/``output.value`` as JSON text: as is when it is JSON, else a string."""
    if not isinstance(text, str):
        return None
    if mime == _JSON_MIME:
        return text
    return _encode(text)


def _document(text: Any) -> str | None:
    """An attribute holding JSON text (such as ``langchain.metadata``), checked."""
    if not isinstance(text, str):
        return None
    try:
        json.loads(text)
    except ValueError:
        return _encode(text)  # cut at the tracer's cap: keep it, as a string
    return text


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def _status(span: ReadableSpan, attributes: Mapping[str, Any], ended: bool) -> str:
    if not ended:
        return "running"
    if attributes.get(_UNFINISHED) is True:
        return "unfinished"
    return _STATUS[span.status.status_code]


def _error_type(span: ReadableSpan, attributes: Mapping[str, Any]) -> str | None:
    declared = attributes.get(_ERROR_TYPE)
    if isinstance(declared, str):
        return declared
    for event in span.events:
        if event.name == "exception":
            found = (event.attributes or {}).get("exception.type")
            if isinstance(found, str):
                return found
    return None


def _events(span: ReadableSpan) -> str | None:
    if not span.events:
        return None
    return _encode(
        [
            {
                "name": event.name,
                "time_ns": event.timestamp,
                "attributes": {k: _json_value(v) for k, v in (event.attributes or {}).items()},
            }
            for event in span.events
        ]
    )


def span_row(span: ReadableSpan, attributes: Mapping[str, Any], end: int | None) -> RowValues:
    """The ``runs`` row of ``span``, from a snapshot of its attributes and its end time.

    ``end`` must be read before ``attributes``: a span records everything before it ends, so
    attributes read after an end was seen are complete. A span that had not ended gives a
    ``running`` row: no end, no duration, no outputs.
    """
    context = span.context
    if context is None:
        raise ValueError("a span without a context cannot be stored")
    start = span.start_time
    if start is None:
        raise ValueError("a span without a start time cannot be stored")
    ended = end is not None
    parent = span.parent
    resource = span.resource.attributes if span.resource is not None else {}
    service = resource.get(_SERVICE_NAME)
    model = attributes.get(_RESPONSE_MODEL) or attributes.get(_REQUEST_MODEL)
    provider = attributes.get(_PROVIDER) or attributes.get(_LEGACY_PROVIDER)
    run_type = attributes.get(_RUN_TYPE)
    tags = attributes.get(_TAGS)
    ttft = attributes.get(_TIME_TO_FIRST_CHUNK)
    status = _status(span, attributes, ended)
    row: RowValues = {
        "run_id": attributes.get(_RUN_ID) if isinstance(attributes.get(_RUN_ID), str) else None,
        "parent_run_id": (
            attributes.get(_PARENT_RUN_ID)
            if isinstance(attributes.get(_PARENT_RUN_ID), str)
            else None
        ),
        "trace_id": hex_trace_id(context.trace_id),
        "span_id": hex_span_id(context.span_id),
        "parent_span_id": hex_span_id(parent.span_id) if parent is not None else None,
        "service_name": service if isinstance(service, str) else None,
        "name": span.name,
        "run_type": run_type if isinstance(run_type, str) else None,
        "span_kind": span.kind.name.lower(),
        "status": status,
        "error_type": _error_type(span, attributes) if status == "error" else None,
        "error_message": (
            span.status.description if status == "error" and span.status.description else None
        ),
        "start_ns": start,
        "end_ns": end,
        "duration_ms": (end - start) / 1e6 if end is not None else None,
        "model_name": model if isinstance(model, str) else None,
        "provider": provider if isinstance(provider, str) else None,
        "ttft_ms": (
            ttft * 1000.0
            if isinstance(ttft, (int, float)) and not isinstance(ttft, bool) and math.isfinite(ttft)
            else None
        ),
        "tags": _encode(list(tags)) if isinstance(tags, (tuple, list)) else None,
        "metadata": _document(attributes.get(_METADATA)),
        "attributes": _encode(
            {k: _json_value(v) for k, v in attributes.items() if k not in _IN_COLUMNS}
        ),
        "events": _events(span),
        "inputs": _content(attributes.get(_INPUT), attributes.get(_INPUT_MIME)),
        "outputs": (
            _content(attributes.get(_OUTPUT), attributes.get(_OUTPUT_MIME)) if ended else None
        ),
    }
    for column, attribute in _TOKEN_COLUMNS.items():
        row[column] = _count(attributes.get(attribute))
    known = [row["input_tokens"], row["output_tokens"]]
    row["total_tokens"] = (
        sum(count for count in known if count is not None)
        if any(count is not None for count in known)
        else None
    )
    return row


def cleaned(row: RowValues) -> RowValues:
    """``row`` with text a database refuses made storable: NUL characters (PostgreSQL rejects
    them in text, and their ``\\u0000`` escape in JSON) and lone surrogates (not encodable as
    UTF-8) become U+FFFD.

    Applied only to a row the database refused, so that the common path pays nothing.
    """
    fixed: RowValues = {}
    for key, value in row.items():
        if isinstance(value, str):
            text = value.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd")
            if not text.isascii():
                text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            fixed[key] = text
        else:
            fixed[key] = value
    return fixed

"""One span as one ``runs`` row.

The row's columns are read from the span's attributes by the names the tracer writes
(OpenTelemetry GenAI conventions, ``langchain.*``, and the content: ``input.value`` /
``output.value``, or a model's, tool's or retriever's GenAI content attributes); what has no
column of its own stays in ``attributes``. Spans of other instrumentations become rows too,
with no run id. JSON columns are handed over as JSON text, and every JSON text written here is
valid JSON: content the tracer cut at its cap (no longer JSON) is stored as a JSON string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from runspan.attributes import (
    ATTEMPT,
    CACHE_CREATION_TOKENS,
    CACHE_READ_TOKENS,
    CONTENT_BY_RUN_TYPE,
    ERROR_TYPE,
    EXCEPTION_EVENT,
    EXCEPTION_TYPE,
    GRAPH_NODE,
    INPUT_MIME_TYPE,
    INPUT_TOKENS,
    INPUT_VALUE,
    INTERRUPTED,
    JSON_MIME,
    LEGACY_PROVIDER,
    METADATA,
    OUTPUT_MIME_TYPE,
    OUTPUT_TOKENS,
    OUTPUT_VALUE,
    PARENT_RUN_ID,
    PROVIDER,
    REASONING_TOKENS,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    RESUMES_TRACE,
    RUN_ID,
    RUN_TYPE,
    SERVICE_NAME,
    SESSION_ID,
    TAGS,
    TIME_TO_FIRST_CHUNK,
    TIME_TO_FIRST_TOKEN,
    UNFINISHED,
    UNFINISHED_REASON,
    USER_ID,
)
from runspan.storage.schema import runs

RowValues = dict[str, Any]

# By the enums' values: hashing an Enum member runs Python code, reading its value does not.
_STATUS = {code._value_: "error" if code is StatusCode.ERROR else "ok" for code in StatusCode}
_KINDS = {kind._value_: kind.name.lower() for kind in SpanKind}

# What the writer writes: every column but the key and those the database computes.
COLUMNS = tuple(
    column.name for column in runs.columns if column.name != "id" and column.computed is None
)


def _build_encoder() -> Callable[[Any], str]:
    """Compact JSON, built once: ``JSONEncoder.encode`` builds a C encoder on every call, which
    costs more than encoding a row's small values. Attribute values cannot hold cycles, so the
    encoder keeps no cycle table and threads can share it."""
    make = getattr(json.encoder, "c_make_encoder", None)
    fallback = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
    ).encode
    if make is None:  # not CPython
        return fallback
    try:
        encoder = make(
            None, str, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
    except TypeError:  # the private constructor changed
        return fallback

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


_encode = _build_encoder()


def encode_json(value: Any) -> str:
    """Compact JSON text of rows or values (no NaN: rows hold none)."""
    return _encode(value)


def _json_value(value: Any) -> Any:
    """An attribute value in JSON terms: non-finite floats as strings (tuples encode as lists)."""
    kind = type(value)
    if kind is float and not math.isfinite(value):
        return str(value)
    if kind is tuple and any(type(item) is float and not math.isfinite(item) for item in value):
        return [_json_value(item) for item in value]
    return value


def _json_attributes(attributes: Mapping[str, Any]) -> str:
    try:
        return _encode(attributes)
    except ValueError:  # a NaN or an infinity, which JSON has no word for
        return _encode({key: _json_value(value) for key, value in attributes.items()})


def _content(text: Any, mime: Any) -> str | None:
    """``input.value``/``output.value`` as JSON text: as is when it is JSON, else a string."""
    if not isinstance(text, str):
        return None
    if mime == JSON_MIME:
        return text
    return _encode(text)


def _document(text: Any) -> str | None:
    """An attribute holding JSON text (such as ``langchain.metadata``), checked; text that is
    not JSON (a tool's plain result, a query) is stored as a JSON string."""
    if not isinstance(text, str):
        return None
    try:
        json.loads(text)
    except ValueError:
        return _encode(text)  # cut at the tracer's cap: keep it, as a string
    return text


def _count(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float and math.isfinite(value):
        return int(value)
    return None  # absent, or not a count (a bool is not one)


def _milliseconds(seconds: Any) -> float | None:
    kind = type(seconds)
    if (kind is float or kind is int) and math.isfinite(seconds):
        return float(seconds) * 1000.0
    return None


def _status(span: ReadableSpan, attributes: Mapping[str, Any], ended: bool) -> str:
    if not ended:
        return "running"
    if attributes.get(UNFINISHED) is True:
        return "unfinished"
    status = _STATUS[span.status.status_code._value_]
    if status == "ok" and attributes.get(INTERRUPTED) is True:
        return "interrupted"
    return status


def _error_type(span: ReadableSpan, attributes: Mapping[str, Any]) -> str | None:
    declared = attributes.get(ERROR_TYPE)
    if isinstance(declared, str):
        return declared
    for event in span.events:
        if event.name == EXCEPTION_EVENT:
            found = (event.attributes or {}).get(EXCEPTION_TYPE)
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


_SERVICE_NAMES: dict[int, tuple[Any, Any]] = {}  # id(resource) -> (resource, service.name)


def _service_name(resource: Any) -> Any:
    """A resource's ``service.name``, read once per resource: spans share their provider's,
    and reading the SDK's attributes goes through a lock. The entry keeps its resource, so
    its id is not reused while cached."""
    if resource is None:
        return None
    found = _SERVICE_NAMES.get(id(resource))
    if found is None:
        found = (resource, resource.attributes.get(SERVICE_NAME))
        if len(_SERVICE_NAMES) < 64:
            _SERVICE_NAMES[id(resource)] = found
    return found[1]


def span_row(span: ReadableSpan, attributes: dict[str, Any], end: int | None) -> RowValues:
    """The ``runs`` row of ``span``, from a snapshot of its attributes and its end time.

    ``end`` must be read before ``attributes``: a span records everything before it ends, so
    attributes read after an end was seen are complete. A span that had not ended gives a
    ``running`` row: no end, no duration, no outputs. ``attributes`` is the caller's own copy:
    the values that have columns are taken out of it, and what is left is the ``attributes``
    column.
    """
    context = span.context
    if context is None:
        raise ValueError("a span without a context cannot be stored")
    start = span.start_time
    if start is None:
        raise ValueError("a span without a start time cannot be stored")
    # This runs for every span: plain dict operations, no helpers where avoidable.
    get, take = attributes.get, attributes.pop
    ended = end is not None
    parent = span.parent
    service = _service_name(span.resource)
    model = get(RESPONSE_MODEL) or get(REQUEST_MODEL)
    provider = get(PROVIDER) or get(LEGACY_PROVIDER)
    run_id, parent_run_id = take(RUN_ID, None), take(PARENT_RUN_ID, None)
    run_type, tags = take(RUN_TYPE, None), take(TAGS, None)
    ttft = take(TIME_TO_FIRST_TOKEN, None)
    first_chunk = take(TIME_TO_FIRST_CHUNK, None)
    metadata = take(METADATA, None)
    content = CONTENT_BY_RUN_TYPE.get(run_type) if type(run_type) is str else None
    if content is not None and (content[0] in attributes or content[1] in attributes):
        # GenAI content attributes: JSON text already, or a tool's or retriever's plain text.
        inputs, outputs = _document(take(content[0], None)), _document(take(content[1], None))
    else:
        inputs = _content(take(INPUT_VALUE, None), take(INPUT_MIME_TYPE, None))
        outputs = _content(take(OUTPUT_VALUE, None), take(OUTPUT_MIME_TYPE, None))
    status = _status(span, attributes, ended)
    failed = status == "error"
    # Most runs are not model calls: one look says whether there are counts to read.
    if INPUT_TOKENS in attributes or OUTPUT_TOKENS in attributes:
        input_tokens = _count(take(INPUT_TOKENS, None))
        output_tokens = _count(take(OUTPUT_TOKENS, None))
    else:
        input_tokens = output_tokens = None
    if input_tokens is None and output_tokens is None:
        total_tokens = None
    else:
        total_tokens = (input_tokens or 0) + (output_tokens or 0)
    cache_read = take(CACHE_READ_TOKENS, None)
    cache_creation = take(CACHE_CREATION_TOKENS, None)
    reasoning = take(REASONING_TOKENS, None)
    reason = take(UNFINISHED_REASON, None) if status == "unfinished" else None
    node, attempt = take(GRAPH_NODE, None), take(ATTEMPT, None)
    resumes = take(RESUMES_TRACE, None)
    session, user = take(SESSION_ID, None), take(USER_ID, None)
    return {
        "run_id": run_id if type(run_id) is str else None,
        "parent_run_id": parent_run_id if type(parent_run_id) is str else None,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "service_name": service if type(service) is str else None,
        "name": span.name,
        "run_type": run_type if type(run_type) is str else None,
        "span_kind": _KINDS[span.kind._value_],
        "status": status,
        "error_type": _error_type(span, attributes) if failed else None,
        "error_message": (span.status.description or None) if failed else None,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": (end - start) / 1e6 if end is not None else None,
        "model_name": model if type(model) is str else None,
        "provider": provider if type(provider) is str else None,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total_tokens,
        "cache_read_tokens": None if cache_read is None else _count(cache_read),
        "cache_creation_tokens": None if cache_creation is None else _count(cache_creation),
        "reasoning_tokens": None if reasoning is None else _count(reasoning),
        "ttft_ms": None if ttft is None else _milliseconds(ttft),
        "first_chunk_ms": None if first_chunk is None else _milliseconds(first_chunk),
        "tags": _encode(tags) if type(tags) in (tuple, list) else None,
        "metadata": _document(metadata),
        "attributes": _json_attributes(attributes),
        "events": _events(span),
        "inputs": inputs,
        "outputs": outputs if ended else None,
        "unfinished_reason": reason if type(reason) is str else None,
        "langgraph_node": node if type(node) is str else None,
        "attempt": attempt if type(attempt) is int else None,
        "resumes_trace_id": resumes if type(resumes) is str else None,
        "session_id": session if type(session) is str else None,
        "user_id": user if type(user) is str else None,
    }


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

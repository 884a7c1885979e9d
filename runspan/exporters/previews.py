"""Spans cut down for the wire: long values become previews, batches stay under a byte budget.

SQL keeps every value whole; what goes over OTLP must fit a receiver's message limit (Jaeger
and the OpenTelemetry Collector refuse gRPC messages over 4 MiB by default) and keep Jaeger's
UI responsive. A string attribute longer than the preview length is sent as its beginning, a
marker and its original size, so a reader of the trace knows it was cut and where the whole
value is. The GenAI content attributes, which readers parse as JSON, stay JSON: their strings
share the preview length, each cut one marked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan

from runspan.attributes import (
    INPUT_MESSAGES,
    OUTPUT_MESSAGES,
    RETRIEVAL_DOCUMENTS,
    SYSTEM_INSTRUCTIONS,
    TOOL_CALL_ARGUMENTS,
    TOOL_CALL_RESULT,
    TOOL_DEFINITIONS,
)
from runspan.jsoncut import cut_strings
from runspan.spancopy import span_with

DEFAULT_PREVIEW_CHARS = 4096
# Under the 4 MiB default of Jaeger's and the Collector's gRPC receivers, with room for the
# protobuf framing and for the estimate below being an estimate.
DEFAULT_MAX_BATCH_BYTES = 3 * 1024 * 1024
# Ids, times, name, kind, status and the framing of one span.
_SPAN_OVERHEAD_BYTES = 200


# What the marker of a cut value says of the whole value.
WHOLE_IN_SQL = "whole in SQL"


def preview(text: str, max_chars: int, note: str = WHOLE_IN_SQL) -> str:
    """``text`` as it goes over the wire: whole when short, else its beginning and a marker."""
    if len(text) <= max_chars:
        return text
    return _cut(text, max_chars, note)


def _cut(text: str, kept: int, note: str = WHOLE_IN_SQL) -> str:
    return f"{text[:kept]}… [cut by runspan: {len(text):,} chars; {note}]"


# Attributes whose value is JSON text that readers parse (tool arguments and results are JSON
# unless the tool's value was a plain string).
_JSON_ATTRIBUTES = frozenset(
    {
        INPUT_MESSAGES,
        OUTPUT_MESSAGES,
        SYSTEM_INSTRUCTIONS,
        TOOL_DEFINITIONS,
        RETRIEVAL_DOCUMENTS,
        TOOL_CALL_ARGUMENTS,
        TOOL_CALL_RESULT,
    }
)


def _json_preview(text: str, max_chars: int, note: str, *, stored: bool = False) -> str:
    """JSON text as it goes over the wire: still JSON, its strings sharing ``max_chars``."""
    try:
        value = json.loads(text)
    except ValueError:
        return preview(text, max_chars, note)  # plain text after all
    if isinstance(value, str) and stored:  # a JSON string, kept JSON for the row builder
        return json.dumps(preview(value, max_chars, note), ensure_ascii=False)
    if not isinstance(value, (list, dict)):
        return preview(text, max_chars, note)
    kept = cut_strings(value, max_chars, lambda text, kept: _cut(text, kept, note))
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":"))


def _previewed_value(value: Any, max_chars: int, key: str, note: str, stored: bool) -> Any:
    if type(value) is str:
        if len(value) <= max_chars:
            return value
        # Content still to be stored (cut in memory, not for the wire): every JSON value stays
        # JSON, for the row builder to read.
        if key in _JSON_ATTRIBUTES or (stored and value[:1] in '{["'):
            return _json_preview(value, max_chars, note, stored=stored)
        return preview(value, max_chars, note)
    if type(value) is tuple and value and type(value[0]) is str:
        return tuple(preview(item, max_chars, note) for item in value)
    return value


def previewed_attributes(
    attributes: Mapping[str, Any] | None,
    max_chars: int,
    note: str = WHOLE_IN_SQL,
    *,
    stored: bool = False,
) -> Mapping[str, Any] | None:
    """``attributes`` themselves when no value is longer than ``max_chars``, else a copy with
    previews of the long values, their markers saying ``note``. ``stored``: the copy is still
    to be stored in SQL, so every value that is JSON stays JSON."""
    if not attributes:
        return attributes
    for value in attributes.values():
        if _needs_preview(value, max_chars):
            break
    else:
        return attributes  # the common case: nothing to cut, nothing copied
    return {
        key: _previewed_value(value, max_chars, key, note, stored)
        for key, value in attributes.items()
    }


def _needs_preview(value: Any, max_chars: int) -> bool:
    kind = type(value)
    if kind is str:
        return len(value) > max_chars
    if kind is tuple:
        return any(type(item) is str and len(item) > max_chars for item in value)
    return False


def previewed_span(span: ReadableSpan, max_chars: int = DEFAULT_PREVIEW_CHARS) -> ReadableSpan:
    """``span`` itself when no value is too long, else a copy with previews in its attributes
    and its events' attributes."""
    attributes = span.attributes
    cut_attributes = previewed_attributes(attributes, max_chars)
    events = span.events
    cut_events = [
        event
        if (cut := previewed_attributes(event.attributes, max_chars)) is event.attributes
        else Event(event.name, cut, event.timestamp)
        for event in events
    ]
    if cut_attributes is attributes and all(
        new is old for new, old in zip(cut_events, events, strict=True)
    ):
        return span
    return span_with(span, attributes=cut_attributes, events=cut_events, links=span.links)


def _value_bytes(value: Any) -> int:
    if type(value) is str:
        # UTF-8 takes up to 4 bytes a character; counting exactly would encode every value.
        return len(value) if value.isascii() else 4 * len(value)
    if type(value) is tuple:
        return sum(_value_bytes(item) for item in value)
    return 16


def _attributes_bytes(attributes: Mapping[str, Any] | None) -> int:
    if not attributes:
        return 0
    return sum(len(key) + 4 + _value_bytes(value) for key, value in attributes.items())


def estimated_bytes(span: ReadableSpan) -> int:
    """An upper estimate of ``span``'s size in an OTLP message."""
    size = _SPAN_OVERHEAD_BYTES + len(span.name) + _attributes_bytes(span.attributes)
    for event in span.events:
        size += _SPAN_OVERHEAD_BYTES // 4 + len(event.name) + _attributes_bytes(event.attributes)
    return size


def chunked(
    spans: Sequence[ReadableSpan],
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    max_spans: int | None = None,
) -> Iterator[list[ReadableSpan]]:
    """``spans`` in consecutive chunks of at most ``max_spans`` whose estimated size stays under
    ``max_bytes`` (a span bigger than that on its own, once previewed, goes alone)."""
    chunk: list[ReadableSpan] = []
    size = 0
    most = max_spans or len(spans)
    for span in spans:
        span_size = estimated_bytes(span)
        if chunk and (size + span_size > max_bytes or len(chunk) >= most):
            yield chunk
            chunk, size = [], 0
        chunk.append(span)
        size += span_size
    if chunk:
        yield chunk

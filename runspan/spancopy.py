"""A finished span with its attributes, events and links replaced, everything else kept: what
the OTLP previews and the queues' compaction both make."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link
from opentelemetry.util.types import Attributes


def span_with(
    span: ReadableSpan,
    *,
    attributes: Attributes,
    events: Sequence[Event],
    links: Sequence[Link],
) -> ReadableSpan:
    """A new ``ReadableSpan``: ``span``'s name, ids, times, status and resource, with these
    parts."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )

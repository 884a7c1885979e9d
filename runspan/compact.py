"""Finished spans made small for their wait in runspan's queues.

The SDK hands a finished span to its processors as a ``ReadableSpan`` over the live span's
parts: attributes, events and links in bounded containers, each with its lock. That is 27
objects the garbage collector tracks (SDK 1.45, a span with an event and a link), and they
wait in the queues until their batch is written. Every young collection that finds them alive
moves them on, and in a web app the old generation's growth brought a full collection (40-130
ms with every thread stopped) every few seconds. A compact span holds the same values in a
plain dict and tuples (which the collector does not track when they hold only strings and
numbers): a handful of objects. The spans of runs are made that way already (``RunSpan``) and
queue as they are.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan, SynchronousMultiSpanProcessor
from opentelemetry.trace import Link
from opentelemetry.util.types import Attributes

from runspan.logs import RateLimitedLog
from runspan.spancopy import span_with
from runspan.tracer.spans import RunSpan


def _plain(attributes: Attributes) -> dict[str, Any] | None:
    return dict(attributes) if attributes else None


def compacted(span: ReadableSpan) -> ReadableSpan:
    """``span`` with its attributes, events and links (and theirs) in plain containers. A span
    whose containers dropped entries is kept as it is: the OTLP export reports those counts.
    So is a run's span: runspan makes those with plain containers already."""
    if type(span) is RunSpan:
        return span
    if span.dropped_attributes or span.dropped_events or span.dropped_links:
        return span
    return span_with(
        span,
        attributes=_plain(span.attributes),
        events=tuple(
            Event(event.name, _plain(event.attributes), event.timestamp) for event in span.events
        ),
        links=tuple(Link(link.context, _plain(link.attributes)) for link in span.links),
    )


class CompactingSpanProcessor(SynchronousMultiSpanProcessor):
    """Forwards each finished span, compacted once, to runspan's queueing processors (the SQL
    writer and the OTLP exporter share the compact span, and so the memory it is counted for)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped
        self._log = RateLimitedLog()

    def on_end(self, span: ReadableSpan) -> None:
        try:
            small = compacted(span)
        except Exception:  # on the app's thread: queue the span as the SDK made it
            self._log.exception("compact", "runspan: could not compact a span; queued it whole")
            small = span
        super().on_end(small)

"""The spans open now, which each batch writes as ``running`` rows, once.

The storage processor notes a span when it starts and forgets it when it ends, on the
application's threads (one dict operation each); the exporter, when it writes a batch, takes the
open spans that no batch has written yet. Spans are keyed by span id, not ``id()``: the SDK's
spans hand their processors a new object when they end.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan

# Beyond it a new span gets no running row (its row still comes when it ends): spans that other
# code starts and never ends cannot grow the map.
DEFAULT_MAX_OPEN_SPANS = 16_384


class OpenSpans:
    """At most ``limit`` open spans, and which of them a batch has written."""

    def __init__(self, limit: int = DEFAULT_MAX_OPEN_SPANS) -> None:
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"max_open_spans={limit!r}: use a non-negative integer")
        self.limit = limit
        self._spans: dict[int, ReadableSpan] = {}
        self._written: set[int] = set()  # span ids of open spans already written

    def __len__(self) -> int:
        return len(self._spans)

    def started(self, span: ReadableSpan) -> None:
        spans = self._spans
        if len(spans) < self.limit and span.context is not None:
            spans[span.context.span_id] = span

    def ended(self, span: ReadableSpan) -> None:
        if span.context is not None:
            self._spans.pop(span.context.span_id, None)

    def unwritten(self) -> list[ReadableSpan]:
        """The sampled open spans that no batch has written yet; from now on they count as
        written. For one batch at a time (the exporter calls it under its lock)."""
        open_now = list(self._spans.values())  # one C call: safe while the app adds
        if not open_now and not self._written:
            return []
        written = self._written
        fresh = [
            span
            for span in open_now
            if (context := span.context) is not None
            and context.trace_flags.sampled
            and context.span_id not in written
        ]
        # What is no longer open is forgotten: this set never outgrows the open spans.
        self._written = {span.context.span_id for span in open_now if span.context is not None}
        return fresh

    def clear(self) -> None:
        """Forget everything (in a forked child, whose open spans are its own)."""
        self._spans.clear()
        self._written = set()

"""A full batch queue drops spans counted and logged once, never per span."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from runspan.batching import QuietBatchSpanProcessor


class BlockedExporter(SpanExporter):
    """Holds every export until released, like a sink that stopped answering."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


@pytest.mark.logs_warnings
def test_a_full_queue_drops_with_a_count_and_one_line(caplog: pytest.LogCaptureFixture) -> None:
    exporter = BlockedExporter()
    processor = QuietBatchSpanProcessor(
        exporter,
        max_queue_size=10,
        max_export_batch_size=5,
        schedule_delay_millis=10,
        sink="the test sink",
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    for n in range(500):
        tracer.start_span(f"span {n}").end()
    exporter.release.set()
    provider.shutdown()

    assert processor.dropped > 0
    assert exporter.exported + processor.dropped == 500
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings[:3]
    assert "the test sink is behind" in warnings[0]


def test_the_sdk_internals_it_reads_are_there() -> None:
    """If a new SDK moves its queue, this fails rather than the guard silently going away."""
    from runspan.batching import _queue_and_limit

    processor = QuietBatchSpanProcessor(BlockedExporter(), max_queue_size=700, sink="x")
    try:
        found = _queue_and_limit(processor)
        assert found is not None
        assert found[1] == 700
    finally:
        processor.shutdown()

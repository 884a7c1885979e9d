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
    """If a new SDK moves its queue or its batch size, this fails rather than the guard and
    the catch-up batches silently going away."""
    from runspan.batching import _batch_sizing, _queue_and_limit

    processor = QuietBatchSpanProcessor(BlockedExporter(), max_queue_size=700, sink="x")
    try:
        found = _queue_and_limit(processor)
        assert found is not None
        assert found[1] == 700
        assert _batch_sizing(processor) is not None
    finally:
        processor.shutdown()


class SizedExporter(SpanExporter):
    """Notes each batch's size; holds exports while ``hold`` is set."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.hold.is_set():
            self.held.set()
            self.release.wait(30)
        self.sizes.append(len(spans))
        return SpanExportResult.SUCCESS


def test_a_queue_behind_is_caught_up_in_large_batches_then_small_again() -> None:
    """Small batches keep a running app's spans young; a backlog (a sink that was slow) is
    written in batches of up to 1,024, the fewest transactions, and no span is lost."""
    from runspan.batching import CATCH_UP_BATCH_SIZE

    exporter = SizedExporter()
    processor = QuietBatchSpanProcessor(
        exporter,
        max_queue_size=4096,
        max_export_batch_size=64,
        schedule_delay_millis=60_000,
        sink="x",
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    try:
        for n in range(200):  # under 256 queued, even if the worker does not run meanwhile
            tracer.start_span(f"keeping up {n}").end()
        assert provider.force_flush()
        keeping_up = list(exporter.sizes)
        assert sum(keeping_up) == 200
        assert max(keeping_up) == 64

        exporter.hold.set()
        for n in range(64):  # a batch's worth wakes the worker, whose export is then held
            tracer.start_span(f"slow sink {n}").end()
        assert exporter.held.wait(10)
        for n in range(3000):  # meanwhile the queue grows past 256 spans: a backlog
            tracer.start_span(f"backlog {n}").end()
        exporter.hold.clear()
        exporter.release.set()
        assert provider.force_flush()
        catching_up = exporter.sizes[len(keeping_up) :]
        assert sum(catching_up) == 3064
        assert max(catching_up) == CATCH_UP_BATCH_SIZE

        for n in range(200):
            tracer.start_span(f"caught up {n}").end()
        assert provider.force_flush()
        again = exporter.sizes[len(keeping_up) + len(catching_up) :]
        assert sum(again) == 200
        assert max(again) == 64
    finally:
        exporter.release.set()
        provider.shutdown()

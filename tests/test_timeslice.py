"""Background work in slices: a thread waiting for the GIL runs between them, unless the
work's queue is filling up."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from runspan.batching import QuietBatchSpanProcessor
from runspan.timeslice import TimeSlices
from tests.support import app_turns_during


def _busy(slices: TimeSlices, steps: int = 4000) -> None:
    """Pure Python work (no blocking call gives up the GIL), with the slices' pauses."""
    with slices.working():
        for _ in range(steps):
            sum(range(300))
            slices.pause_if_due()


def test_a_waiting_thread_runs_between_slices() -> None:
    slices = TimeSlices()
    turns = app_turns_during(lambda: _busy(slices))
    assert turns >= 10, "the app's thread waited for the whole of the work"


def test_work_that_is_behind_does_not_pause() -> None:
    """When the queue fills up, not losing spans comes first: the work keeps the GIL (the
    interpreter's own switch interval still applies in a real app)."""
    slices = TimeSlices()
    slices.behind = lambda: True
    assert app_turns_during(lambda: _busy(slices)) == 0


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_the_slice_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        TimeSlices(bad)


class _SlicedExporter(SpanExporter):
    """An exporter with slices, held until released, like a sink that fell behind."""

    def __init__(self) -> None:
        self.slices = TimeSlices()
        self.holding = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.holding.set()
        self.release.wait(30)
        return SpanExportResult.SUCCESS


def test_an_exporter_is_behind_once_its_queue_holds_a_backlog() -> None:
    """Over 256 spans, or a quarter of a smaller queue (here 100 of 400)."""
    exporter = _SlicedExporter()
    processor = QuietBatchSpanProcessor(
        exporter, max_queue_size=400, max_export_batch_size=10, schedule_delay_millis=5, sink="x"
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    try:
        for n in range(50):
            tracer.start_span(f"span {n}").end()
        # The worker holds its first batch (10 spans) before the backlog grows: had it first run
        # once 100 were queued, it would have taken them all as one catch-up batch.
        assert exporter.holding.wait(10)
        assert not exporter.slices.behind()  # 40 queued of 400
        for n in range(100):
            tracer.start_span(f"span {n}").end()
        assert exporter.slices.behind()  # over 100 queued
    finally:
        exporter.release.set()
        provider.shutdown()
    assert not exporter.slices.behind()

"""Stored runs sent over OTLP: ``runspan export``.

Each run goes as the span :mod:`runspan.storage.rebuild` makes of it, with its original ids, so
a span replayed twice is one span to Jaeger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from runspan.storage import Run, RunStore
from runspan.storage.rebuild import Resources, stored_span

# How many traces, or runs, are read and their spans sent at a time.
TRACES_PER_STEP = 200
PAGE_SIZE = 1000


@dataclass
class Replayed:
    """What a replay did."""

    traces: int = 0  # traces with at least one span sent
    spans: int = 0
    running: int = 0  # runs with no end yet: not sent, since a span needs one
    failed: int = 0  # spans of the step the receiver did not take; the replay stopped there


def window_pages(
    store: RunStore, since: int | None, until: int | None, page_size: int = PAGE_SIZE
) -> Iterator[list[Run]]:
    """The runs that ended in ``[since, until]``, a page at a time, in end order."""
    after: tuple[int, str, str] | None = None
    while True:
        page = store.ended_runs(since, until, after=after, limit=page_size)
        if not page:
            return
        yield page
        last = page[-1]
        assert last.end_ns is not None
        after = (last.end_ns, last.trace_id, last.span_id)


def trace_pages(store: RunStore, trace_ids: Sequence[str]) -> Iterator[list[Run]]:
    """Every run of these traces, running ones included, a few hundred traces at a time."""
    for start in range(0, len(trace_ids), TRACES_PER_STEP):
        yield store.runs_of_traces(trace_ids[start : start + TRACES_PER_STEP])


def replay_runs(
    pages: Iterable[Sequence[Run]],
    exporter: SpanExporter,
    *,
    progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Send every finished run of ``pages`` to ``exporter``, a page per export; stops at the
    first page the receiver does not take. ``progress`` is told how many runs each page had."""
    result = Replayed()
    resources = Resources()
    traces: set[str] = set()
    for page in pages:
        spans = []
        for run in page:
            if run.end_ns is None:
                result.running += 1
            else:
                spans.append(stored_span(run, resources(run.service_name)))
        if spans and exporter.export(spans) is not SpanExportResult.SUCCESS:
            result.failed += len(spans)
            break  # the receiver is down or refuses: say so rather than try every page
        result.spans += len(spans)
        traces.update(span.trace_id for span in page if span.end_ns is not None)
        if progress is not None:
            progress(len(page))
    result.traces = len(traces)
    return result

"""Trace and span ids taken from LangChain run UUIDs.

The handler offers the run's UUID just before it starts the span; a provider built with
:class:`RunIdGenerator` takes it, so the trace id of a root run *is* its run id and a run id found
in a log finds its trace in Jaeger. Any other provider ignores the offer and keeps its own ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

_SPAN_ID_MASK = (1 << 64) - 1


class _Offer(threading.local):
    # Class attributes are per-thread defaults of a threading.local subclass.
    trace_id: int = 0
    span_id: int = 0


_offer = _Offer()


@contextmanager
def offered_ids(run_id: UUID) -> Iterator[None]:
    """Offer ``run_id`` as the next trace id and span id generated on this thread."""
    _offer.trace_id = run_id.int
    _offer.span_id = run_id.int & _SPAN_ID_MASK
    try:
        yield
    finally:
        _offer.trace_id = 0
        _offer.span_id = 0


class RunIdGenerator(IdGenerator):
    """Uses the run UUID the tracer offers, and random ids for every other span."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_trace_id(self) -> int:
        offered, _offer.trace_id = _offer.trace_id, 0
        return offered or self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        offered, _offer.span_id = _offer.span_id, 0
        return offered or self._random.generate_span_id()

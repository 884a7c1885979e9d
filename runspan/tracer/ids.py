"""Trace and span ids taken from LangChain run UUIDs.

A provider built with :class:`RunIdGenerator` (``runspan.configure()`` builds one) lets runspan
use the run's UUID as the trace id of a root run and derive each span id from its run's UUID, so
that a run id found in a log finds its trace in Jaeger. Spans that are not LangChain runs, and
providers built without it, get random ids; so do root runs under a sampler that reads trace
ids (see ``runspan.tracer.spans``).
"""

from __future__ import annotations

from uuid import UUID

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

_SPAN_ID_MASK = (1 << 64) - 1


class RunIdGenerator(RandomIdGenerator):
    """Random ids for other spans; tells runspan that run UUIDs may be used for runs."""


def trace_id_of(run_id: UUID) -> int:
    """The trace id of a root run: its 128-bit UUID."""
    return run_id.int


def span_id_of(run_id: UUID) -> int:
    """The span id of a run: the low 64 bits of its UUID, which are random in UUIDv4 and v7."""
    return run_id.int & _SPAN_ID_MASK

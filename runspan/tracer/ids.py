"""Trace ids taken from LangChain run UUIDs.

A provider built with :class:`RunIdGenerator` (``runspan.configure()`` builds one) lets runspan
use a root run's UUID as its trace id, so that a run id found in a log finds its trace in Jaeger.
Span ids are never taken from run UUIDs: LangChain's run ids are time-ordered UUIDv7s whose low
bits are mostly a timestamp counter, not random, and an application may pass run ids of its own.
Spans that are not LangChain runs, providers built without :class:`RunIdGenerator`, and root runs
under a sampler that reads trace ids (see ``runspan.tracer.spans``) get random ids.
"""

from __future__ import annotations

from uuid import UUID

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator


class RunIdGenerator(RandomIdGenerator):
    """Random ids for other spans; tells runspan that run UUIDs may be used as trace ids."""


def trace_id_of(run_id: UUID) -> int:
    """The trace id of a root run: its 128-bit UUID."""
    return run_id.int

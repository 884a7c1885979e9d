"""Trace and span ids: a root run's UUID as its trace id where runspan made the provider, the
provider's own ids elsewhere, and span ids that never repeat within a trace."""

from __future__ import annotations

from uuid import UUID

from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.testing import SpanCapture


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=RunIdGenerator(), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _chain() -> RunnableLambda:  # type: ignore[type-arg]
    return RunnableLambda(lambda x: x) | RunnableLambda(lambda x: x)  # type: ignore[return-value]


class TestRunIds:
    def test_trace_id_is_the_root_run_id(self, capture: SpanCapture) -> None:
        """With runspan's id generator a root's trace id is its run UUID, so a run id from a
        log finds its trace; span ids are not taken from run UUIDs, and differ."""
        _chain().invoke(1, config={"callbacks": [capture.handler]})
        [root] = capture.tree()
        attrs = root.span.attributes or {}
        run_id = UUID(str(attrs["langchain.run_id"]))
        assert root.span.context is not None
        assert root.span.context.trace_id == run_id.int
        ids = set()
        for node in root.walk():
            span_run = UUID(str((node.span.attributes or {})["langchain.run_id"]))
            assert node.span.context is not None
            assert node.span.context.span_id != span_run.int & (2**64 - 1)
            ids.add(node.span.context.span_id)
        assert len(ids) == 3

    def test_a_provider_of_the_application_keeps_its_own_ids(self) -> None:
        """On a provider runspan did not build, ids are the provider's; run ids stay
        attributes."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _chain().invoke(1, config={"callbacks": [TracingCallbackHandler(provider)]})
        spans = exporter.get_finished_spans()
        assert len(spans) == 3
        for span in spans:
            run_id = UUID(str((span.attributes or {})["langchain.run_id"]))
            assert span.context is not None
            assert span.context.span_id != run_id.int & (2**64 - 1)
        provider.shutdown()

    def test_a_root_under_an_application_span_keeps_its_trace(self, capture: SpanCapture) -> None:
        """A root that joins an outer span takes the outer trace id and a span id of its own."""
        with capture.provider.get_tracer("app").start_as_current_span("request") as outer:
            _chain().invoke(1, config={"callbacks": [capture.handler]})
        root = capture.span("RunnableSequence")
        assert root.context is not None
        assert root.context.trace_id == outer.get_span_context().trace_id
        assert root.context.span_id != outer.get_span_context().span_id


class _RepeatingIds(RunIdGenerator):
    """An id generator at its worst: the same span id again and again, and the invalid one."""

    def __init__(self) -> None:
        self._ids = iter([7, 7, 0, 7, 7, 7, 8, 8, 9])

    def generate_span_id(self) -> int:
        return next(self._ids, 10)


class TestSpanIds:
    def test_run_ids_alike_in_their_low_bits_get_distinct_span_ids(self) -> None:
        """Run ids that differ only in their high 64 bits (LangChain's UUIDv7s share most of
        their low bits with their neighbours) give every run of the trace its own span id,
        and the root's UUID is still the trace id."""
        provider, exporter = _provider()
        handler = TracingCallbackHandler(provider)
        runs = [UUID(int=(i << 64) | 0xABC) for i in range(1, 7)]
        for parent, run in zip([None, *runs], runs, strict=False):
            handler.on_chain_start({}, {}, run_id=run, parent_run_id=parent, name=str(run))
        for run in reversed(runs):
            handler.on_chain_end({}, run_id=run)
        spans = exporter.get_finished_spans()
        assert len({s.context.span_id for s in spans if s.context}) == len(runs)
        assert {s.context.trace_id for s in spans if s.context} == {runs[0].int}
        assert len([s for s in spans if s.parent is None]) == 1
        provider.shutdown()

    def test_a_repeating_id_generator_never_gives_two_runs_one_span_id(self) -> None:
        """Even a generator that repeats itself cannot give two runs of a trace one span id,
        nor the invalid id 0."""
        provider, exporter = _provider()
        provider.id_generator = _RepeatingIds()
        chain = RunnableLambda(lambda x: x) | RunnableLambda(lambda x: x) | RunnableLambda(str)
        chain.invoke(1, config={"callbacks": [TracingCallbackHandler(provider)]})
        ids = [s.context.span_id for s in exporter.get_finished_spans() if s.context]
        assert len(ids) == 4
        assert sorted(ids) == [7, 8, 9, 10]
        provider.shutdown()

"""Trace and span ids: run UUIDs where runspan made the provider, the provider's own elsewhere."""

from __future__ import annotations

from uuid import UUID

from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runspan import TracingCallbackHandler
from runspan.testing import SpanCapture


def _chain() -> RunnableLambda:  # type: ignore[type-arg]
    return RunnableLambda(lambda x: x) | RunnableLambda(lambda x: x)  # type: ignore[return-value]


class TestRunIds:
    def test_trace_id_is_the_root_run_id(self, capture: SpanCapture) -> None:
        """With runspan's id generator a root's trace id is its run UUID and every span id
        comes from its run UUID, so a run id from a log finds its trace."""
        _chain().invoke(1, config={"callbacks": [capture.handler]})
        [root] = capture.tree()
        attrs = root.span.attributes or {}
        run_id = UUID(str(attrs["langchain.run_id"]))
        assert root.span.context is not None
        assert root.span.context.trace_id == run_id.int
        for node in root.walk():
            span_run = UUID(str((node.span.attributes or {})["langchain.run_id"]))
            assert node.span.context is not None
            assert node.span.context.span_id == span_run.int & (2**64 - 1)

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
        """A root that joins an outer span takes the outer trace id; its span id is still its
        run's."""
        with capture.provider.get_tracer("app").start_as_current_span("request") as outer:
            _chain().invoke(1, config={"callbacks": [capture.handler]})
        root = capture.span("RunnableSequence")
        assert root.context is not None
        assert root.context.trace_id == outer.get_span_context().trace_id
        run_id = UUID(str((root.attributes or {})["langchain.run_id"]))
        assert root.context.span_id == run_id.int & (2**64 - 1)

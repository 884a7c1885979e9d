"""Run spans: what processors, samplers and application code see of them, on an SDK provider
and on any other OpenTelemetry provider."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import StatusCode

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.testing import SpanCapture, span_tree
from runspan.tracer.spans import RunSpan
from tests.support import assert_matches_langchain


def _chain() -> Any:
    return RunnableLambda(lambda x: x) | RunnableLambda(lambda x: x)


class EnvironmentProcessor(SpanProcessor):
    """Adds an attribute to every span when it starts, as many deployments do."""

    def __init__(self) -> None:
        self.started: list[Span] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span.set_attribute("deployment.environment", "test")
        self.started.append(span)


def _provider(**kwargs: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=RunIdGenerator(), shutdown_on_exit=False, **kwargs)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class TestWhatOthersSeeOfARunSpan:
    def test_processors_see_every_run_start_and_can_add_attributes(self) -> None:
        """A span processor's on_start gets each run's span and what it sets is exported."""
        processor = EnvironmentProcessor()
        provider, exporter = _provider()
        provider.add_span_processor(processor)
        _chain().invoke(1, config={"callbacks": [TracingCallbackHandler(provider)]})
        spans = exporter.get_finished_spans()
        assert len(processor.started) == len(spans) == 3
        assert all(isinstance(s, Span) for s in processor.started)
        assert all((s.attributes or {})["deployment.environment"] == "test" for s in spans)
        provider.shutdown()

    def test_application_code_can_annotate_the_current_run(self, capture: SpanCapture) -> None:
        """Inside a run, get_current_span() is the run's span: attributes, events and status
        set there are exported; values OpenTelemetry does not allow are dropped."""

        def work(x: int) -> int:
            span = trace.get_current_span()
            span.set_attribute("app.user", "u1")
            span.set_attribute("app.bad", {"not": "allowed"})  # type: ignore[arg-type]
            span.set_attributes({"app.ids": [1, 2, 3], "app.mixed": [1, "a"]})
            span.add_event("cache.miss", {"key": "k1"})
            span.set_status(StatusCode.ERROR, "handled upstream")
            return x

        RunnableLambda(work).invoke(1, config={"callbacks": [capture.handler]})
        span = capture.span("work")
        attrs = dict(span.attributes or {})
        assert attrs["app.user"] == "u1"
        assert attrs["app.ids"] == (1, 2, 3)
        assert "app.bad" not in attrs
        assert "app.mixed" not in attrs
        assert [e.name for e in span.events] == ["cache.miss"]
        assert span.status.status_code is StatusCode.ERROR

    def test_an_ended_run_span_ignores_changes(self, capture: SpanCapture) -> None:
        """After a run ended, its span no longer changes, as an SDK span."""
        holder: list[trace.Span] = []
        RunnableLambda(lambda x: holder.append(trace.get_current_span()) or x).invoke(
            1, config={"callbacks": [capture.handler]}
        )
        [run_span] = holder
        run_span.set_attribute("late", True)
        run_span.add_event("late")
        assert not run_span.is_recording()
        [span] = capture.spans
        assert "late" not in (span.attributes or {})
        assert not span.events


class TestSampling:
    def test_a_provider_that_samples_nothing(self) -> None:
        """With ALWAYS_OFF nothing is exported and the chain is unaffected."""
        provider, exporter = _provider(sampler=ALWAYS_OFF)
        handler = TracingCallbackHandler(provider)
        assert _chain().invoke(5, config={"callbacks": [handler]}) == 5
        assert exporter.get_finished_spans() == ()
        assert handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}
        provider.shutdown()

    def test_traces_are_sampled_whole_or_not_at_all(self) -> None:
        """Under a ratio sampler every trace arrives complete or not at all, never partial."""
        provider, exporter = _provider(sampler=ParentBased(TraceIdRatioBased(0.5)))
        handler = TracingCallbackHandler(provider)
        for i in range(200):
            _chain().invoke(i, config={"callbacks": [handler]})
        roots = span_tree(exporter.get_finished_spans())
        assert 60 < len(roots) < 140, len(roots)  # about half
        assert all(len(root.children) == 2 for root in roots)
        provider.shutdown()

    def test_ratio_sampling_keeps_random_trace_ids(self) -> None:
        """A ratio sampler reads trace ids as random numbers, which UUIDs are not; under it a
        root's trace id stays random, and its run id is still an attribute."""
        from uuid import UUID

        provider, exporter = _provider(sampler=TraceIdRatioBased(1.0))
        _chain().invoke(1, config={"callbacks": [TracingCallbackHandler(provider)]})
        [root] = span_tree(exporter.get_finished_spans())
        run_id = UUID(str((root.span.attributes or {})["langchain.run_id"]))
        assert root.span.context is not None
        assert root.span.context.trace_id != run_id.int
        provider.shutdown()


class _ForwardingTracer(trace.Tracer):
    """A tracer that is not the SDK's: forces the OpenTelemetry API path."""

    def __init__(self, inner: trace.Tracer) -> None:
        self._inner = inner

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._inner.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        return self._inner.start_as_current_span(*args, **kwargs)  # type: ignore[return-value]


class _ForwardingProvider(trace.TracerProvider):
    def __init__(self, inner: TracerProvider) -> None:
        self._inner = inner

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _ForwardingTracer(self._inner.get_tracer(*args, **kwargs))


class TestOtherProviders:
    def test_any_opentelemetry_provider_gets_the_same_tree(
        self, collector: RunCollectorCallbackHandler
    ) -> None:
        """A provider that is not the SDK's gets the same spans through the API."""
        inner, exporter = _provider()
        capture = SpanCapture()
        capture.exporter = exporter
        capture.handler = TracingCallbackHandler(_ForwardingProvider(inner))
        (RunnableLambda(lambda x: x) | RunnableLambda(lambda x: {"y": x})).invoke(
            1, config={"callbacks": [capture.handler, collector]}
        )
        assert_matches_langchain(capture, collector)
        assert not any(isinstance(s, RunSpan) for s in capture.spans)  # the API path was taken
        inner.shutdown()
        capture.provider.shutdown()

    def test_the_no_op_provider(self) -> None:
        """With OpenTelemetry's no-op provider nothing is recorded and nothing fails."""
        handler = TracingCallbackHandler(trace.NoOpTracerProvider())
        assert _chain().invoke(3, config={"callbacks": [handler]}) == 3
        assert handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}

"""runspan.configure(), flush() and shutdown()."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from langchain_core.runnables import RunnableLambda
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

import runspan

pytestmark = pytest.mark.usefixtures("fresh_globals")


class ListExporter(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


class TestConfigure:
    def test_builds_and_installs_the_global_provider(self) -> None:
        """configure() installs an SDK provider with service.name; a handler made with no
        arguments then sends its spans there, and flush() delivers what a batching
        processor still holds."""
        exporter = ListExporter()
        provider = runspan.configure(
            service_name="checkout", span_processors=[BatchSpanProcessor(exporter)]
        )
        assert trace.get_tracer_provider() is provider
        assert runspan.configured_provider() is provider
        assert provider.resource.attributes["service.name"] == "checkout"
        RunnableLambda(lambda x: x).invoke(
            1, config={"callbacks": [runspan.TracingCallbackHandler()]}
        )
        assert runspan.flush() is True
        assert [s.name for s in exporter.spans] == ["RunnableLambda"]
        [span] = exporter.spans
        assert span.resource.attributes["service.name"] == "checkout"

    def test_service_name_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_SERVICE_NAME names the service when no argument does."""
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        provider = runspan.configure()
        assert provider.resource.attributes["service.name"] == "from-env"

    def test_default_service_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With neither, the service is "langchain-app", never unknown_service."""
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        provider = runspan.configure()
        assert provider.resource.attributes["service.name"] == "langchain-app"

    def test_settings_become_the_handlers_defaults(self) -> None:
        """Settings given to configure() apply to handlers made afterwards."""
        runspan.configure(capture_content=False, max_value_chars=500)
        handler = runspan.TracingCallbackHandler()
        assert handler.settings.capture_content is False
        assert handler.settings.max_value_chars == 500
        assert runspan.TracingCallbackHandler(capture_content=True).settings.capture_content

    def test_second_call_is_a_clear_error(self) -> None:
        """configure() twice raises and says what to do instead."""
        runspan.configure()
        with pytest.raises(RuntimeError, match="already called"):
            runspan.configure()

    def test_refuses_to_replace_the_applications_provider(self) -> None:
        """An application that installed its own provider gets an error that tells it how
        to use runspan with that provider."""
        trace.set_tracer_provider(TracerProvider(shutdown_on_exit=False))
        with pytest.raises(RuntimeError, match="tracer_provider="):
            runspan.configure()
        provider = runspan.configure(set_global=False)
        assert trace.get_tracer_provider() is not provider

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("RUNSPAN_MAX_VALUE_CHARS", "lots"),
            ("RUNSPAN_MAX_VALUE_CHARS", "10"),
            ("RUNSPAN_MAX_RUN_AGE_SECONDS", "-1"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe"),
        ],
    )
    def test_bad_environment_fails_early(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
    ) -> None:
        """A bad variable is a ValueError from configure(), before any chain runs."""
        monkeypatch.setenv(variable, value)
        with pytest.raises(ValueError, match=variable):
            runspan.configure()
        assert runspan.configured_provider() is None

    def test_shutdown_flushes(self) -> None:
        """shutdown() hands over every ended span before it stops the provider."""
        exporter = ListExporter()
        runspan.configure(span_processors=[BatchSpanProcessor(exporter)])
        RunnableLambda(lambda x: x).invoke(
            1, config={"callbacks": [runspan.TracingCallbackHandler()]}
        )
        runspan.shutdown()
        assert len(exporter.spans) == 1

    def test_flush_and_shutdown_before_configure_are_harmless(self) -> None:
        """Calling them without configure() does nothing and does not fail."""
        assert runspan.flush() is True
        runspan.shutdown()


class TestTheWholeSetUp:
    def test_configure_then_instrument(self) -> None:
        """The two-line set-up: configure() then instrument(); every chain is traced into
        the configured provider, with run ids as trace ids."""
        from uuid import UUID

        exporter = ListExporter()
        runspan.configure(service_name="app", span_processors=[BatchSpanProcessor(exporter)])
        runspan.instrument()
        try:
            RunnableLambda(lambda x: x).invoke(1)
        finally:
            runspan.uninstrument()
        runspan.flush()
        [span] = exporter.spans
        run_id = UUID(str((span.attributes or {})["langchain.run_id"]))
        assert span.context is not None
        assert span.context.trace_id == run_id.int
        assert span.resource.attributes["service.name"] == "app"

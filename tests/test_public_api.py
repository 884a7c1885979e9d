"""The public surface is exactly what is intended."""

from __future__ import annotations

import runspan
import runspan.testing


def test_exported_names() -> None:
    """runspan exports these names and no others."""
    assert sorted(runspan.__all__) == sorted(
        [
            "RunIdGenerator",
            "Sampling",
            "TracerSettings",
            "TracingCallbackHandler",
            "__version__",
            "configure",
            "configured_provider",
            "feedback",
            "flush",
            "instrument",
            "instrumented_handler",
            "shutdown",
            "uninstrument",
        ]
    )
    for name in runspan.__all__:
        assert hasattr(runspan, name), name


def test_testing_helpers_exported() -> None:
    """runspan.testing exports its helpers."""
    assert sorted(runspan.testing.__all__) == [
        "SpanCapture",
        "SpanNode",
        "capture_spans",
        "render_tree",
        "span_tree",
    ]


def test_handler_is_a_langchain_callback_handler_run_inline() -> None:
    """The handler is a plain BaseCallbackHandler, called inline, never a BaseTracer."""
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tracers.base import BaseTracer

    assert issubclass(runspan.TracingCallbackHandler, BaseCallbackHandler)
    assert not issubclass(runspan.TracingCallbackHandler, BaseTracer)
    assert runspan.TracingCallbackHandler.run_inline is True


def test_exporters_exported() -> None:
    """runspan.exporters exports what users call and no more: replay and links for the
    command line are importable but not part of the API."""
    import runspan.exporters

    assert sorted(runspan.exporters.__all__) == [
        "GRPC",
        "HTTP_PROTOBUF",
        "OtlpSettings",
        "OtlpSpanExporter",
        "jaeger_trace_url",
        "otlp_span_processor",
    ]
    for name in runspan.exporters.__all__:
        assert hasattr(runspan.exporters, name), name


def test_storage_exported() -> None:
    """runspan.storage exports what users call and no more."""
    import runspan.storage

    assert sorted(runspan.storage.__all__) == [
        "ConfigurationError",
        "DatabaseNotFoundError",
        "DatabaseUnavailable",
        "NotFoundError",
        "Pruned",
        "QueryError",
        "Run",
        "RunFilter",
        "RunStore",
        "SchemaError",
        "Session",
        "SqlResult",
        "SqlSpanExporter",
        "Stat",
        "StorageError",
        "StorageSpanProcessor",
        "Trace",
        "create_reader",
        "prune",
        "upgrade_database",
    ]
    for name in runspan.storage.__all__:
        assert hasattr(runspan.storage, name), name


def test_an_unknown_tracer_setting_is_refused_with_the_choices() -> None:
    """A misspelt setting is a TypeError naming the settings there are, from the handler as
    from TracerSettings.build (configure() takes the same keywords)."""
    import pytest

    with pytest.raises(TypeError, match=r"capture_contnet.*capture_content"):
        runspan.TracingCallbackHandler(capture_contnet=False)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_live_traces"):
        runspan.TracerSettings.build(colour="red")  # type: ignore[call-arg]

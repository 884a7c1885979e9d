"""The public surface is exactly what is intended."""

from __future__ import annotations

import runspan
import runspan.testing


def test_exported_names() -> None:
    """runspan exports these names and no others."""
    assert sorted(runspan.__all__) == sorted(
        [
            "RunIdGenerator",
            "TracerSettings",
            "TracingCallbackHandler",
            "__version__",
            "configure",
            "configured_provider",
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
    """runspan.exporters exports its public names and no others."""
    import runspan.exporters

    assert sorted(runspan.exporters.__all__) == [
        "DEFAULT_JAEGER_URL",
        "DEFAULT_MAX_BATCH_BYTES",
        "DEFAULT_PREVIEW_CHARS",
        "GRPC",
        "HTTP_PROTOBUF",
        "JAEGER_URL_ENV",
        "OtlpSettings",
        "OtlpSpanExporter",
        "Replayed",
        "jaeger_trace_url",
        "otlp_span_processor",
        "preview",
        "replay",
        "stored_span",
        "trace_pages",
        "window_pages",
    ]
    for name in runspan.exporters.__all__:
        assert hasattr(runspan.exporters, name), name

"""OTLP export to Jaeger and any other OTLP backend, and replay of stored runs.

``runspan.configure(otlp_endpoint=...)`` (or the standard ``OTEL_EXPORTER_OTLP_*`` variables)
adds an OTLP span processor beside the SQL writer; on a provider of your own::

    provider.add_span_processor(otlp_span_processor(OtlpSettings.build("http://jaeger:4317")))

What goes over the wire is bounded (long values become previews) and an unreachable receiver
never slows the application; SQL keeps everything, and ``runspan export`` replays it.
"""

from runspan.exporters.jaeger import DEFAULT_JAEGER_URL, JAEGER_URL_ENV, jaeger_trace_url

# For runspan's command line, not in __all__: whether to print Jaeger links.
from runspan.exporters.jaeger import jaeger_base_url as jaeger_base_url
from runspan.exporters.otlp import OtlpSpanExporter, otlp_span_processor
from runspan.exporters.previews import DEFAULT_MAX_BATCH_BYTES, DEFAULT_PREVIEW_CHARS, preview
from runspan.exporters.replay import Replayed, replay, stored_span, trace_pages, window_pages
from runspan.exporters.settings import GRPC, HTTP_PROTOBUF, OtlpSettings

__all__ = [
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

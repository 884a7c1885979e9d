"""OTLP export to Jaeger and any other OTLP backend, and replay of stored runs.

``runspan.configure(otlp_endpoint=...)`` (or the standard ``OTEL_EXPORTER_OTLP_*`` variables)
adds an OTLP span processor beside the SQL writer; on a provider of your own::

    provider.add_span_processor(otlp_span_processor(OtlpSettings.build("http://jaeger:4317")))

What goes over the wire is bounded (long values become previews) and an unreachable receiver
never slows the application; SQL keeps everything, and ``runspan export`` replays it.
"""

# For runspan's command line, not in __all__: Jaeger links, and replay.
from runspan.exporters.jaeger import configured_jaeger_url as configured_jaeger_url
from runspan.exporters.jaeger import jaeger_base_url as jaeger_base_url
from runspan.exporters.jaeger import jaeger_trace_url
from runspan.exporters.otlp import OtlpSpanExporter, otlp_span_processor
from runspan.exporters.replay import Replayed as Replayed
from runspan.exporters.replay import replay as replay
from runspan.exporters.replay import stored_span as stored_span
from runspan.exporters.replay import trace_pages as trace_pages
from runspan.exporters.replay import window_pages as window_pages
from runspan.exporters.settings import GRPC, HTTP_PROTOBUF, OtlpSettings

__all__ = [
    "GRPC",
    "HTTP_PROTOBUF",
    "OtlpSettings",
    "OtlpSpanExporter",
    "jaeger_trace_url",
    "otlp_span_processor",
]

"""OTLP export to Jaeger and any other OTLP backend, and replay of stored runs.

``runspan.configure(otlp_endpoint=...)`` (or the standard ``OTEL_EXPORTER_OTLP_*`` variables)
adds an OTLP span processor beside the SQL writer; on a provider of your own::

    provider.add_span_processor(otlp_span_processor(OtlpSettings.build("http://jaeger:4317")))

What goes over the wire is bounded (long values become previews) and an unreachable receiver
never slows the application; SQL keeps everything, and ``runspan export`` replays it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runspan._lazy import lazy_names

# For runspan's command line, not in __all__: Jaeger links.
from runspan.exporters.jaeger import configured_jaeger_url as configured_jaeger_url
from runspan.exporters.jaeger import jaeger_base_url as jaeger_base_url
from runspan.exporters.jaeger import jaeger_trace_url

if TYPE_CHECKING:
    from runspan.exporters.otlp import OtlpSpanExporter, otlp_span_processor
    from runspan.exporters.replay import Replayed as Replayed
    from runspan.exporters.replay import replay_runs as replay_runs
    from runspan.exporters.replay import trace_pages as trace_pages
    from runspan.exporters.replay import window_pages as window_pages
    from runspan.exporters.settings import GRPC, HTTP_PROTOBUF, OtlpSettings
    from runspan.storage.rebuild import stored_span as stored_span

__all__ = [
    "GRPC",
    "HTTP_PROTOBUF",
    "OtlpSettings",
    "OtlpSpanExporter",
    "jaeger_trace_url",
    "otlp_span_processor",
]

# Imported when first used: gRPC and the OTLP exporters are slow to import, and the command
# line's listings need none of them. Replay's names are for the command line, not in __all__.
_WHERE = {
    "GRPC": "runspan.exporters.settings",
    "HTTP_PROTOBUF": "runspan.exporters.settings",
    "OtlpSettings": "runspan.exporters.settings",
    "OtlpSpanExporter": "runspan.exporters.otlp",
    "otlp_span_processor": "runspan.exporters.otlp",
    "Replayed": "runspan.exporters.replay",
    # Not named "replay": importing the submodule runspan.exporters.replay binds that name.
    "replay_runs": "runspan.exporters.replay",
    "stored_span": "runspan.storage.rebuild",
    "trace_pages": "runspan.exporters.replay",
    "window_pages": "runspan.exporters.replay",
}


__getattr__ = lazy_names(__name__, _WHERE)

"""LangChain runs as OpenTelemetry spans.

This subpackage knows LangChain and the OpenTelemetry API; it knows nothing of SQL or OTLP.
"""

from runspan.tracer.handler import TracingCallbackHandler
from runspan.tracer.ids import RunIdGenerator
from runspan.tracer.instrumentation import instrument, instrumented_handler, uninstrument

__all__ = [
    "RunIdGenerator",
    "TracingCallbackHandler",
    "instrument",
    "instrumented_handler",
    "uninstrument",
]

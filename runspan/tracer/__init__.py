"""LangChain runs as OpenTelemetry spans.

This subpackage knows LangChain and the OpenTelemetry API; it knows nothing of SQL or OTLP. Its
names are imported when first used (LangChain is slow to import, and not every user of runspan
needs it: the command line does not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runspan._lazy import lazy_names

if TYPE_CHECKING:
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

_WHERE = {
    "RunIdGenerator": "runspan.tracer.ids",
    "TracingCallbackHandler": "runspan.tracer.handler",
    "instrument": "runspan.tracer.instrumentation",
    "instrumented_handler": "runspan.tracer.instrumentation",
    "uninstrument": "runspan.tracer.instrumentation",
}


__getattr__ = lazy_names(__name__, _WHERE)

"""runspan: every LangChain run as an OpenTelemetry span.

chain.with_config(callbacks=[runspan.TracingCallbackHandler()]).invoke(...)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("runspan")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from runspan.default_provider import default_provider as _default_provider
from runspan.provider import configure, configured_provider, flush, shutdown
from runspan.tracer import (
    RunIdGenerator,
    TracingCallbackHandler,
    instrument,
    instrumented_handler,
    uninstrument,
)
from runspan.tracer.fallback import set_fallback as _set_fallback
from runspan.tracer.settings import TracerSettings

# Handlers given no provider, with none set globally, store runs through runspan's own.
_set_fallback(_default_provider)

__all__ = [
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

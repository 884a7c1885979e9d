"""runspan: every LangChain run as an OpenTelemetry span.

chain.with_config(callbacks=[runspan.TracingCallbackHandler()]).invoke(...)

The public names are imported when first used, so that the ``runspan`` command, which needs
none of LangChain, starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runspan._lazy import lazy_names

if TYPE_CHECKING:
    __version__: str
    from runspan.provider import configure, configured_provider, flush, shutdown
    from runspan.sampling import Sampling
    from runspan.scoring import feedback
    from runspan.tracer.handler import TracingCallbackHandler
    from runspan.tracer.ids import RunIdGenerator
    from runspan.tracer.instrumentation import instrument, instrumented_handler, uninstrument
    from runspan.tracer.settings import TracerSettings

__all__ = [
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

_WHERE = {
    "RunIdGenerator": "runspan.tracer.ids",
    "Sampling": "runspan.sampling",
    "TracerSettings": "runspan.tracer.settings",
    "TracingCallbackHandler": "runspan.tracer.handler",
    "configure": "runspan.provider",
    "configured_provider": "runspan.provider",
    "feedback": "runspan.scoring",
    "flush": "runspan.provider",
    "shutdown": "runspan.provider",
    "instrument": "runspan.tracer.instrumentation",
    "instrumented_handler": "runspan.tracer.instrumentation",
    "uninstrument": "runspan.tracer.instrumentation",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - slow

    try:
        return version("runspan")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0"


_lazy = lazy_names(__name__, _WHERE)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = globals()[name] = _version()
        return value
    return _lazy(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _DefaultProvider:
    """runspan's own provider for handlers given none (``runspan.default_provider``), loaded
    when a handler first needs it: storage and OTLP are not imported before."""

    def check(self) -> None:
        importlib.import_module("runspan.default_provider").default_provider.check()

    def get(self) -> Any:
        return importlib.import_module("runspan.default_provider").default_provider.get()


def _register_default_provider() -> None:
    from runspan.tracer.fallback import set_fallback  # noqa: PLC0415 - a light module

    set_fallback(_DefaultProvider())


_register_default_provider()

"""The provider a handler falls back to when it is given none and none is set globally.

Without it, the seed line (``chain.with_config(callbacks=[TracingCallbackHandler()])``) in an
app that never called ``runspan.configure()`` would send its spans to OpenTelemetry's no-op
provider: nothing stored, nothing said. The tracer knows nothing of SQL or OTLP, so the provider
that stores runs is registered here by the ``runspan`` package (``runspan.default_provider``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider


class Fallback(Protocol):
    def check(self) -> None:
        """Raise ``ValueError`` if the fallback's configuration (the environment) is bad."""

    def get(self) -> TracerProvider:
        """The provider, built at the first call and the same one after."""


_fallback: Fallback | None = None


def set_fallback(fallback: Fallback | None) -> None:
    global _fallback  # noqa: PLW0603 - one per process, registered by the runspan package
    _fallback = fallback


def fallback() -> Fallback | None:
    return _fallback

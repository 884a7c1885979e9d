"""runspan's own provider, for handlers that are given none when none is set globally.

The seed line alone then stores runs, where ``runspan.configure()`` would have: the SQLite
default (or ``RUNSPAN_DATABASE_URL``), OTLP too if an ``OTEL_EXPORTER_OTLP_*`` endpoint is set,
the ``OTEL_SERVICE_NAME``. It is built once per process at the first run, never installed
globally (an app that sets its own provider later gets its own), flushed by ``runspan.flush()``
and at exit, and one INFO line says where runs go and how to choose.
"""

from __future__ import annotations

import threading

from opentelemetry.sdk.trace import TracerProvider

from runspan.environment import check_sdk_environment, service_name_from
from runspan.exporters.settings import OtlpSettings
from runspan.logs import logger
from runspan.queue_memory import queue_memory
from runspan.storage import database_url_from, safe_url
from runspan.termination import flush_before_sigterm


class DefaultProvider:
    """Builds runspan's provider from the environment, once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.provider: TracerProvider | None = None

    def check(self) -> None:
        """Raise ``ValueError`` now for a bad variable, rather than at the first run."""
        check_sdk_environment()
        service_name_from(None)
        database_url_from(None)
        OtlpSettings.build(None)
        queue_memory()

    def get(self) -> TracerProvider:
        provider = self.provider
        if provider is not None:
            return provider
        with self._lock:
            if self.provider is None:
                self.provider = self._build()
            return self.provider

    def _build(self) -> TracerProvider:
        from runspan.provider import build_provider, flush  # noqa: PLC0415 - imports this one

        check_sdk_environment()
        url = database_url_from(None)
        otlp = OtlpSettings.build(None)
        provider = build_provider(service_name_from(None), database_url=url, otlp=otlp)
        flush_before_sigterm(flush)
        also = f" and sent over OTLP to {otlp.display_endpoint}" if otlp is not None else ""
        logger.info(
            "runspan: no OpenTelemetry tracer provider is set, so runs are stored in %s%s;"
            " call runspan.configure() at start-up, or set RUNSPAN_DATABASE_URL, to choose",
            safe_url(url),
            also,
        )
        return provider


#: The one per process.
default_provider = DefaultProvider()

"""``runspan.configure()``: the SDK tracer provider that carries runspan's sinks.

One provider feeds every sink through its span processors. It is built once per process, with
the service name in its resource and :class:`RunIdGenerator`, so that trace ids are root run ids.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from sqlalchemy import URL
from typing_extensions import Unpack

from runspan.compact import CompactingSpanProcessor
from runspan.environment import check_sdk_environment, service_name_from
from runspan.exporters.otlp import OtlpSpanExporter, otlp_span_processor
from runspan.exporters.settings import OtlpSettings
from runspan.queue_memory import QueueMemory, queue_memory
from runspan.sampling import Sampling, SamplingSpanProcessor, sampling_from
from runspan.storage.processor import StorageSpanProcessor
from runspan.storage.retention import retention_days_from
from runspan.termination import flush_before_sigterm
from runspan.tracer.ids import RunIdGenerator
from runspan.tracer.settings import (
    TracerOptions,
    TracerSettings,
    set_default_tracer_settings,
)

_lock = threading.Lock()
_provider: TracerProvider | None = None
# The SQL writer of each provider built here, for runspan.feedback().
_storage: weakref.WeakKeyDictionary[TracerProvider, StorageSpanProcessor] = (
    weakref.WeakKeyDictionary()
)


def storage_of(provider: TracerProvider) -> StorageSpanProcessor | None:
    """The SQL writer runspan gave ``provider``, if it gave it one."""
    return _storage.get(provider)


def configure(
    service_name: str | None = None,
    *,
    database_url: str | None = None,
    storage: bool = True,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    otlp_headers: Mapping[str, str] | str | None = None,
    otlp_certificate: str | None = None,
    otlp_insecure: bool | None = None,
    otlp_timeout: float | None = None,
    otlp_preview_chars: int | None = None,
    max_queue_bytes: int | None = None,
    sampling: Sampling | str | None = None,
    retention_days: float | None = None,
    span_processors: Iterable[SpanProcessor] = (),
    set_global: bool = True,
    **tracer: Unpack[TracerOptions],
) -> TracerProvider:
    """Build runspan's tracer provider and make it the global one.

    Args:
        service_name: the ``service.name`` of every span; else ``OTEL_SERVICE_NAME``, else
            ``langchain-app``.
        database_url: where runs are stored; else ``RUNSPAN_DATABASE_URL``, else
            ``sqlite:///runspan.db`` (in the working directory). The schema is created or
            upgraded here; an unreachable database is retried in the background.
        storage: ``False`` stores nothing (spans still reach ``span_processors``).
        otlp_endpoint: send spans over OTLP there too (Jaeger: ``http://localhost:4317``);
            else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``;
            else no OTLP export (unless ``OTEL_TRACES_EXPORTER=otlp``).
        otlp_protocol: ``"grpc"`` or ``"http/protobuf"``; else ``OTEL_EXPORTER_OTLP_PROTOCOL``;
            else ``http/protobuf`` for port 4318 and ``grpc`` otherwise.
        otlp_headers: headers for every request (``{"x-api-key": ...}`` or ``"k=v,k2=v2"``);
            else ``OTEL_EXPORTER_OTLP_HEADERS``.
        otlp_certificate: PEM file of the CA to trust for ``https``; else
            ``OTEL_EXPORTER_OTLP_CERTIFICATE``; else the system's.
        otlp_insecure: gRPC without TLS; by default decided by the endpoint's scheme.
        otlp_timeout: seconds one export may take (default 10).
        otlp_preview_chars: longest value sent whole over OTLP; else
            ``RUNSPAN_OTLP_PREVIEW_CHARS``, else 4096. SQL keeps every value whole.
        max_queue_bytes: the most the SQL writer's and the OTLP exporter's queues hold
            together, in bytes (estimated); else ``RUNSPAN_MAX_QUEUE_BYTES``, else 64 MiB.
            Beyond it the oldest waiting content is cut to previews, then new runs dropped,
            counted and logged.
        sampling: which traces to keep (:class:`~runspan.Sampling`, or a text of rules such
            as ``"ratio=0.1,slower_than=2000,apply=otlp+sql"``); else ``RUNSPAN_SAMPLING``;
            else every trace. Traces with an error are kept; a trace is decided when its root
            ends (see docs/configuration.md, "Sampling").
        retention_days: the writer removes traces older than this many days, with their runs,
            every hour; else ``RUNSPAN_RETENTION_DAYS``; else none.
        span_processors: more processors for the provider, such as your own exporter's.
        set_global: install the provider as OpenTelemetry's global one, so that handlers made
            without ``tracer_provider=`` and the application's own spans share it.
        tracer: ``capture_content``, ``max_value_chars``, ``redact``, ``separate_trace``,
            ``max_run_age_seconds``, ``max_live_traces`` (see :class:`~runspan.TracerSettings`):
            the defaults of every :class:`~runspan.TracingCallbackHandler` made afterwards.

    Raises:
        ValueError: a bad argument or environment variable (storage's
            :class:`~runspan.storage.ConfigurationError` is one).
        runspan.storage.SchemaError: the database is not runspan's, or a newer runspan's.
        RuntimeError: called twice, or another global tracer provider is already installed.
    """
    global _provider  # noqa: PLW0603 - one provider per process, like OpenTelemetry's global
    for name, flag in (("storage", storage), ("set_global", set_global)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name}={flag!r}: use True or False")
    processors = _span_processors(span_processors)
    check_sdk_environment()
    memory = queue_memory(max_queue_bytes)
    rules = sampling_from(sampling)
    retention = retention_days_from(retention_days)
    settings = TracerSettings.build(**tracer)
    name = service_name_from(service_name)
    otlp = OtlpSettings.build(
        otlp_endpoint,
        protocol=otlp_protocol,
        headers=otlp_headers,
        certificate=otlp_certificate,
        insecure=otlp_insecure,
        timeout=otlp_timeout,
        preview_chars=otlp_preview_chars,
    )
    with _lock:
        if _provider is not None:
            raise RuntimeError(
                "runspan.configure() was already called in this process. Call it once at start-up;"
                " for a second provider, build one and pass it as"
                " TracingCallbackHandler(tracer_provider=...)."
            )
        if set_global and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            raise RuntimeError(
                "An OpenTelemetry tracer provider is already installed globally. Keep it: pass"
                " runspan.configure(set_global=False), or give your provider to"
                " TracingCallbackHandler(tracer_provider=...)."
            )
        provider = build_provider(
            name,
            database_url=database_url,
            storage=storage,
            otlp=otlp,
            more=processors,
            memory=memory,
            sampling=rules,
            retention_days=retention,
        )
        if set_global:
            trace.set_tracer_provider(provider)
        set_default_tracer_settings(settings)
        _provider = provider
    # Exit handlers do not run when SIGTERM ends the process (as it does a container's, and as
    # uvicorn re-raises it after its graceful shutdown): flush then, where nothing else handles it.
    flush_before_sigterm(flush)
    return provider


def build_provider(
    service_name: str,
    *,
    database_url: str | URL | None,
    storage: bool = True,
    otlp: OtlpSettings | None = None,
    otlp_exporter: OtlpSpanExporter | None = None,
    more: Iterable[SpanProcessor] = (),
    memory: QueueMemory | None = None,
    sampling: Sampling | None = None,
    retention_days: float | None = None,
) -> TracerProvider:
    """runspan's SDK provider, with no global state touched: ``configure()`` and the demo both
    build theirs here. The SQL writer first, then OTLP (``otlp_exporter``, if given, is the
    exporter it uses), then ``more``. The first two queue each span compacted once, and share
    ``memory`` (by default the budget ``RUNSPAN_MAX_QUEUE_BYTES`` or 64 MiB); ``sampling``
    decides, trace by trace, what reaches them; the writer removes runs older than
    ``retention_days``."""
    memory = memory if memory is not None else queue_memory()
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}), id_generator=RunIdGenerator()
    )
    queued = CompactingSpanProcessor()
    writer: StorageSpanProcessor | None = None
    exporting: SpanProcessor | None = None
    if storage:
        writer = _storage[provider] = StorageSpanProcessor(
            database_url, memory=memory, retention_days=retention_days
        )
    if otlp is not None:
        exporting = otlp_span_processor(otlp, exporter=otlp_exporter, stored=storage, memory=memory)
    if sampling is not None:
        queued.add_span_processor(SamplingSpanProcessor(sampling, sql=writer, otlp=exporting))
    else:
        for processor in (writer, exporting):
            if processor is not None:
                queued.add_span_processor(processor)
    if storage or otlp is not None:
        provider.add_span_processor(queued)
    for processor in more:
        provider.add_span_processor(processor)
    return provider


def _span_processors(given: Iterable[SpanProcessor]) -> list[SpanProcessor]:
    try:
        processors = list(given)
    except TypeError:
        raise ValueError("span_processors: use a list of OpenTelemetry span processors") from None
    for processor in processors:
        if not isinstance(processor, SpanProcessor):
            raise ValueError(
                f"span_processors: {type(processor).__name__} is not a span processor; wrap an"
                " exporter as BatchSpanProcessor(exporter)"
            )
    return processors


def configured_provider() -> TracerProvider | None:
    """The provider :func:`configure` built, or ``None`` before it is called."""
    return _provider


def _providers() -> list[TracerProvider]:
    """configure()'s provider, and the one handlers fell back to without it."""
    from runspan.default_provider import default_provider  # noqa: PLC0415 - imports this one

    return [p for p in (_provider, default_provider.provider) if p is not None]


def flush(timeout_millis: int = 30_000) -> bool:
    """Hand every span ended so far to the sinks: when it returns ``True``, every run ended so far
    is in the database. ``False`` if that did not finish in time or the database is unreachable."""
    flushed = [provider.force_flush(timeout_millis) for provider in _providers()]  # every one
    return all(flushed)


def shutdown() -> None:
    """Flush and stop runspan's provider; it also runs at interpreter exit, and a SIGTERM that
    nothing else handles flushes before the process dies of it."""
    for provider in _providers():
        provider.shutdown()

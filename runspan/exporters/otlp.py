"""OTLP export that never gets in the way: bounded payloads, fail-fast outages, one log line.

:class:`OtlpSpanExporter` wraps OpenTelemetry's own OTLP exporter (gRPC or HTTP). It sends
previews of long values in batches under a receiver's message limit, and when the receiver is
down it stops trying for a while (doubling, up to 30 s) instead of letting every batch wait out
the exporter's retries: the runs are in SQL, and ``runspan export`` replays them. An outage is
logged once when it starts and once when it ends, with how many spans were not sent; the inner
exporter's own per-attempt warnings are folded into that line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from runspan.batching import (
    MAX_EXPORT_BATCH_SIZE,
    MAX_QUEUE_SIZE,
    SCHEDULE_DELAY_MILLIS,
    QuietBatchSpanProcessor,
)
from runspan.exporters.previews import DEFAULT_MAX_BATCH_BYTES, chunked, previewed_span
from runspan.exporters.settings import GRPC, OtlpSettings
from runspan.logs import logger
from runspan.queue_memory import QueueMemory
from runspan.timeslice import TimeSlices

FIRST_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 30.0
# Spans per request of a running app's exporter. The SDK's encoder takes 30-40 us a span, all of
# it holding the GIL: 16 spans are about half a millisecond, after which the exporter pauses for
# the app (runspan.timeslice). Replaying history (``runspan export``) sends more at once.
DEFAULT_MAX_BATCH_SPANS = 16


class _FailureCapture(logging.Filter):
    """Holds back the OTLP exporter's own log records while runspan's export calls it, keeping
    the last message as the reason for runspan's single line. Other uses of those loggers (an
    application's own OTLP exporter) pass through untouched."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    @contextmanager
    def capturing(self) -> Iterator[list[str]]:
        messages: list[str] = []
        self._local.messages = messages
        try:
            yield messages
        finally:
            self._local.messages = None

    def filter(self, record: logging.LogRecord) -> bool:
        messages = getattr(self._local, "messages", None)
        if messages is None:
            return True
        try:
            messages.append(record.getMessage())
        except Exception:  # a record whose arguments do not format
            messages.append(str(record.msg))
        return False


_capture = _FailureCapture()


def _attach_capture() -> None:
    """Put the capture on every OTLP exporter logger that exists (filters apply only to the
    logger a record is made on, not to its parents)."""
    for name, candidate in list(logging.Logger.manager.loggerDict.items()):
        if (
            name.startswith("opentelemetry.exporter.otlp")
            and isinstance(candidate, logging.Logger)
            and _capture not in candidate.filters
        ):
            candidate.addFilter(_capture)


def build_inner_exporter(settings: OtlpSettings) -> SpanExporter:
    """OpenTelemetry's OTLP exporter for ``settings``.

    Whatever the settings leave open (compression, client certificates, a timeout from
    ``OTEL_EXPORTER_OTLP_TIMEOUT``) the exporter reads from the environment itself.
    """
    headers = dict(settings.headers) or None
    if settings.protocol == GRPC:
        import grpc  # noqa: PLC0415 - only for gRPC
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as GrpcExporter,
        )

        credentials = None
        if settings.certificate is not None and settings.insecure is not True:
            with open(settings.certificate, "rb") as pem:
                credentials = grpc.ssl_channel_credentials(root_certificates=pem.read())
        return GrpcExporter(
            endpoint=settings.endpoint,
            insecure=settings.insecure,
            credentials=credentials,
            headers=headers,
            timeout=settings.timeout,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(
        endpoint=settings.endpoint,
        certificate_file=settings.certificate,
        headers=headers,
        timeout=settings.timeout,
        session=_session_keeping_its_ca() if settings.certificate is not None else None,
    )


def _session_keeping_its_ca() -> Any:
    """A requests session whose CA file is not replaced by ``REQUESTS_CA_BUNDLE``.

    requests lets that variable (set system-wide on many machines) override a session's
    ``verify``, so the CA given to runspan would be ignored and TLS to a private collector
    would fail verification.
    """
    import requests  # noqa: PLC0415 - the HTTP exporter's own dependency

    class Session(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            if isinstance(self.verify, str):
                settings["verify"] = self.verify
            return settings

    return Session()


class OtlpSpanExporter(SpanExporter):
    """Sends spans over OTLP with previews for long values, in batches under a byte budget,
    pausing while the receiver is down.

    Args:
        settings: where and how; see :meth:`OtlpSettings.build`.
        inner: the exporter that does the sending; by default OpenTelemetry's OTLP exporter
            for ``settings``.
        max_batch_bytes: the most one request may carry (estimated).
        max_batch_spans: the most spans one request carries (``None``: as many as fit).
        stored: the same spans are stored in SQL, so an outage loses nothing (said in its log
            line, with how to replay).
        pauses: the first and the longest pause after a failure, in seconds.
        log_outages: log an outage's start and end, as a running app's exporter should; a
            one-shot sender (``runspan export``) reports :attr:`last_failure` itself instead.
    """

    def __init__(
        self,
        settings: OtlpSettings,
        *,
        inner: SpanExporter | None = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_batch_spans: int | None = DEFAULT_MAX_BATCH_SPANS,
        stored: bool = True,
        pauses: tuple[float, float] = (FIRST_PAUSE_SECONDS, MAX_PAUSE_SECONDS),
        log_outages: bool = True,
    ) -> None:
        self.settings = settings
        self._log_outages = log_outages
        #: Why the last export failed, as the inner exporter said it; ``None`` after a success.
        self.last_failure: str | None = None
        self._stored = stored
        self._first_pause, self._max_pause = pauses
        self._inner = inner if inner is not None else build_inner_exporter(settings)
        _attach_capture()
        self._max_batch_bytes = max_batch_bytes
        self._max_batch_spans = max_batch_spans
        #: Pauses between requests, so that encoding never stalls the app's threads.
        self.slices = TimeSlices()
        self._lock = threading.Lock()
        self._pause = 0.0
        self._resume_at = 0.0
        self._failing_since: float | None = None
        self._not_sent = 0
        # The end times of the first and last span not sent in this outage: what
        # `runspan export --since ... --until ...` sends again.
        self._missed: tuple[int, int] | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # The batch thread and a flush may both call.
        with self._lock, self.slices.working():
            if self._failing_since is not None and time.monotonic() < self._resume_at:
                self._missing(spans)
                return SpanExportResult.FAILURE
            preview_chars = self.settings.preview_chars
            pause_if_due = self.slices.pause_if_due
            wire = []
            for span in spans:
                pause_if_due()
                wire.append(previewed_span(span, preview_chars))
            sent = 0
            for chunk in chunked(wire, self._max_batch_bytes, self._max_batch_spans):
                pause_if_due()
                with _capture.capturing() as messages:
                    try:
                        ok = self._inner.export(chunk) is SpanExportResult.SUCCESS
                    except Exception as error:  # the inner exporter should not raise; if it does
                        ok = False
                        messages.append(f"{type(error).__name__}: {error}")
                if not ok:
                    self._missing(wire[sent:])
                    self._failed(messages)
                    return SpanExportResult.FAILURE
                sent += len(chunk)
            self.last_failure = None
            if self._failing_since is not None:
                self._recovered()
            return SpanExportResult.SUCCESS

    def _missing(self, spans: Sequence[ReadableSpan]) -> None:
        self._not_sent += len(spans)
        ends = [span.end_time for span in spans if span.end_time is not None]
        if ends:
            first, last = min(ends), max(ends)
            if self._missed is not None:
                first, last = min(first, self._missed[0]), max(last, self._missed[1])
            self._missed = (first, last)

    def _failed(self, messages: list[str]) -> None:
        self._pause = min(max(self._pause * 2, self._first_pause), self._max_pause)
        self._resume_at = time.monotonic() + self._pause
        if not messages:
            reason = "the receiver did not accept the spans"
        elif messages[0] == messages[-1]:
            reason = messages[0]
        else:  # the first attempt's error is often the cause, the last one the outcome
            reason = f"{messages[0]} / {messages[-1]}"
        self.last_failure = messages[-1] if messages else reason  # the outcome
        if self._failing_since is not None:
            return
        self._failing_since = time.time()
        if not self._log_outages:
            return
        logger.warning(
            "OTLP export to %s failed: %s. %s runspan retries every %g s at most and logs again"
            " when export works.",
            self.settings.display_endpoint,
            reason,
            "Runs are still stored in SQL." if self._stored else "Spans are dropped meanwhile.",
            self._max_pause,
        )

    def _recovered(self) -> None:
        since = self._failing_since
        assert since is not None
        started = datetime.fromtimestamp(since, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        replay = ""
        if self._stored and self._missed is not None:
            replay = f"; send them with `{self.replay_command}`"
        if self._log_outages:
            logger.warning(
                "OTLP export to %s works again. %d spans were not sent since %s UTC%s.",
                self.settings.display_endpoint,
                self._not_sent,
                started,
                replay,
            )
        self._failing_since = None
        self._pause = 0.0
        self._not_sent = 0
        self._missed = None

    @property
    def replay_command(self) -> str | None:
        """The ``runspan export`` command that sends the spans not sent in this outage."""
        if self._missed is None:
            return None
        first, last = self._missed
        return (
            f"runspan export --endpoint {self.settings.display_endpoint}"
            f" --since {_moment(first, up=False)} --until {_moment(last, up=True)}"
        )

    @property
    def failing(self) -> bool:
        """Whether the receiver is down (the last export failed)."""
        return self._failing_since is not None

    @property
    def not_sent(self) -> int:
        """Spans not sent in the current outage (0 when export works)."""
        return self._not_sent

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()


def _moment(ns: int, *, up: bool) -> str:
    """``ns`` as an ISO time to the microsecond (what ``--since`` reads), rounded down, or up so
    that the span ending at ``ns`` is inside the window."""
    micros = -(-ns // 1000) if up else ns // 1000
    moment = datetime.fromtimestamp(micros // 10**6, tz=timezone.utc)
    return moment.replace(microsecond=micros % 10**6).isoformat()


def otlp_span_processor(
    settings: OtlpSettings,
    *,
    exporter: OtlpSpanExporter | None = None,
    stored: bool = True,
    memory: QueueMemory | None = None,
) -> QuietBatchSpanProcessor:
    """A batch processor sending to ``settings``' endpoint: add it to any SDK provider.
    ``stored``: the provider also stores the spans in SQL (see :class:`OtlpSpanExporter`).
    ``memory``: the byte budget its queue shares (by default one of 64 MiB of its own)."""
    return QuietBatchSpanProcessor(
        exporter if exporter is not None else OtlpSpanExporter(settings, stored=stored),
        schedule_delay_millis=SCHEDULE_DELAY_MILLIS,
        max_queue_size=MAX_QUEUE_SIZE,
        max_export_batch_size=MAX_EXPORT_BATCH_SIZE,
        sink=f"OTLP export to {settings.display_endpoint}",
        memory=memory if memory is not None else QueueMemory(),
    )

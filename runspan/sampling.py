"""Sampling with rules: which traces are exported over OTLP, and which keep their content in SQL.

A trace is decided once, when its root span ends (a span with no parent in this process), by
rules over the whole trace: any span with an error, a root slower than a threshold, a session or
user named in the rules, else a ratio of the rest, chosen from the trace id so that every
process of a distributed trace chooses alike. Until then its finished spans wait here, so that a
trace is kept or left whole, never half a tree. Spans that end after their root follow the
decision.

Waiting costs memory: a span holds about 1 KiB plus its content until its root ends. It is
bounded: beyond ``max_waiting_spans`` spans or ``max_waiting_bytes`` bytes (10,000 and 16 MiB
by default), or for a trace waiting longer than
``max_wait_seconds`` (a root that never ends), the oldest trace is decided at once and kept, so
the bound costs exported volume, never an error trace.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from runspan.attributes import METADATA, SESSION_ID, USER_ID
from runspan.logs import RateLimitedLog
from runspan.queue_memory import CONTENT_ATTRIBUTES, span_bytes
from runspan.spancopy import span_with

SAMPLING_ENV = "RUNSPAN_SAMPLING"
#: The attribute of a run stored without its content because its trace was not sampled.
CONTENT_SAMPLED_OUT = "runspan.content.sampled_out"
# What a trace not kept loses in SQL: its inputs and outputs (metadata stays: it names the
# session and user, and is small).
_DROPPED_CONTENT = tuple(key for key in CONTENT_ATTRIBUTES if key != METADATA)
# Low bits of the trace id the ratio is drawn from: random in OpenTelemetry's ids and in the
# UUIDv7 of LangChain's root runs (whose top bits are time, and bits 62-63 the variant).
_RATIO_BITS = 56
_DECISIONS_KEPT = 65_536


@dataclass(frozen=True)
class Sampling:
    """Which traces to keep. A trace is kept if any rule keeps it.

    Attributes:
        ratio: the share of the other traces kept, from 0 to 1.
        errors: keep every trace with a span that failed.
        slower_than_ms: keep every trace whose root took at least this long.
        sessions, users: keep every trace of these conversations (``session.id``) and users
            (``user.id``).
        otlp: apply to OTLP export: a trace not kept is not sent.
        sql_content: apply to SQL: a trace not kept is stored without its inputs and outputs
            (its runs, timings, tokens and errors are stored and counted as ever).
        max_waiting_spans, max_waiting_bytes: the most finished spans, and bytes of them
            (estimated as the queues' budget counts them), waiting for their roots to end.
        max_wait_seconds: the longest a trace waits for its root.
    """

    ratio: float = 1.0
    errors: bool = True
    slower_than_ms: float | None = None
    sessions: frozenset[str] = field(default_factory=frozenset)
    users: frozenset[str] = field(default_factory=frozenset)
    otlp: bool = True
    sql_content: bool = False
    max_waiting_spans: int = 10_000
    max_waiting_bytes: int = 16 * 1024 * 1024
    max_wait_seconds: float = 600.0

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise ValueError(f"sampling ratio={self.ratio!r}: use a number from 0 to 1")
        if self.slower_than_ms is not None and not self.slower_than_ms >= 0:
            raise ValueError(f"sampling slower_than_ms={self.slower_than_ms!r}: use 0 or more")
        for name in ("max_waiting_spans", "max_waiting_bytes"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"sampling {name}={value!r}: use a positive integer")
        if not self.max_wait_seconds > 0:
            raise ValueError(
                f"sampling max_wait_seconds={self.max_wait_seconds!r}: use a positive number"
            )
        for name in ("sessions", "users"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"sampling {name}={value!r}: use a set of strings")
            object.__setattr__(self, name, frozenset(value))

    def by_ratio(self, trace_id: int) -> bool:
        return (trace_id & ((1 << _RATIO_BITS) - 1)) < self.ratio * (1 << _RATIO_BITS)


_SAMPLING_HELP = (
    "use comma-separated rules, such as 'ratio=0.1,slower_than=2000,session=s1|s2,user=u1,"
    "apply=otlp+sql': ratio (0 to 1, of the traces no other rule keeps), errors=keep|ignore,"
    " slower_than (milliseconds), session and user (names, | between them), apply (otlp, sql"
    " or otlp+sql), max_waiting_spans, max_waiting_bytes, max_wait_seconds"
)


def sampling_from(
    given: Sampling | str | None, environ: Mapping[str, str] = os.environ
) -> Sampling | None:
    """The rules ``runspan.configure(sampling=)`` gives, else ``RUNSPAN_SAMPLING``'s; ``None``
    keeps every trace.

    Raises:
        ValueError: rules that do not parse, naming the argument or the variable.
    """
    if isinstance(given, Sampling):
        return given
    if given is not None and not isinstance(given, str):
        raise ValueError(f"sampling={given!r}: use runspan.Sampling(...) or a text of rules")
    source, raw = ("sampling", given) if given is not None else (SAMPLING_ENV, None)
    if raw is None:
        raw = environ.get(SAMPLING_ENV, "")
    if not raw.strip():
        return None
    try:
        return _parse(raw)
    except ValueError as error:
        raise ValueError(f"{source}={raw!r}: {error}; {_SAMPLING_HELP}") from None


def _parse(text: str) -> Sampling:
    options: dict[str, object] = {}
    for part in text.split(","):
        key, equals, value = (piece.strip() for piece in part.partition("="))
        if not key:
            continue
        if not equals or not value:
            raise ValueError(f"{part.strip()!r} has no value")
        if key in ("ratio", "slower_than", "max_wait_seconds"):
            try:
                number = float(value.removesuffix("ms") if key == "slower_than" else value)
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a number") from None
            options["slower_than_ms" if key == "slower_than" else key] = number
        elif key in ("max_waiting_spans", "max_waiting_bytes"):
            if not value.isdigit():
                raise ValueError(f"{key}={value!r} is not a whole number")
            options[key] = int(value)
        elif key in ("session", "user"):
            options[f"{key}s"] = frozenset(name.strip() for name in value.split("|"))
        elif key == "errors":
            if value not in ("keep", "ignore"):
                raise ValueError(f"errors={value!r}: use keep or ignore")
            options["errors"] = value == "keep"
        elif key == "apply":
            targets = {target.strip() for target in value.split("+")}
            if not targets <= {"otlp", "sql"}:
                raise ValueError(f"apply={value!r}: use otlp, sql or otlp+sql")
            options["otlp"], options["sql_content"] = "otlp" in targets, "sql" in targets
        else:
            raise ValueError(f"unknown rule {key!r}")
    return Sampling(**options)  # type: ignore[arg-type]


class _Waiting:
    """A trace's finished spans, waiting for its root, and what they say so far."""

    __slots__ = ("failed", "named", "since", "size", "spans")

    def __init__(self, now: float) -> None:
        self.spans: list[ReadableSpan] = []
        self.size = 0
        self.failed = False
        self.named = False
        self.since = now


def _is_local_root(span: ReadableSpan) -> bool:
    return span.parent is None or span.parent.is_remote


def without_content(span: ReadableSpan) -> ReadableSpan:
    """``span`` without its inputs and outputs, marked as sampled out."""
    attributes = {
        key: value for key, value in (span.attributes or {}).items() if key not in _DROPPED_CONTENT
    }
    attributes[CONTENT_SAMPLED_OUT] = True
    return span_with(span, attributes=attributes, events=span.events, links=span.links)


class SamplingSpanProcessor(SpanProcessor):
    """Holds each trace's finished spans until its root ends, then hands the whole trace on:
    to ``otlp`` only if kept (when the rules apply to OTLP), and to ``sql`` whole, or without
    content if not kept (when they apply to SQL content). A target the rules do not apply to
    gets every span as it ends."""

    def __init__(
        self,
        rules: Sampling,
        *,
        sql: SpanProcessor | None = None,
        otlp: SpanProcessor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self._sql, self._otlp = sql, otlp
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()
        self._waiting_spans = self._waiting_bytes = 0
        self._decided: OrderedDict[int, bool] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock
        self._log = RateLimitedLog()
        #: Traces kept, traces left out, and traces decided early (kept) by the bounds.
        self.kept = self.left_out = self.decided_early = 0

    # Spans whose target takes them as they end, and spans that wait for the decision.
    def _passes(self) -> list[SpanProcessor]:
        passing = []
        if self._sql is not None and not self.rules.sql_content:
            passing.append(self._sql)
        if self._otlp is not None and not self.rules.otlp:
            passing.append(self._otlp)
        return passing

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for target in (self._sql, self._otlp):
            if target is not None:
                target.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for target in self._passes():
            target.on_end(span)
        try:
            ready = self._hold(span)
        except Exception:  # on the app's thread: a fault keeps the span
            self._log.exception("sampling", "runspan: could not sample a span; kept it")
            ready = [([span], True)]
        for spans, keep in ready:
            self._hand_on(spans, keep)

    def _hold(self, span: ReadableSpan) -> list[tuple[list[ReadableSpan], bool]]:
        """Record ``span``; the traces now decided, with their spans."""
        context = span.get_span_context()
        if context is None:
            return [([span], True)]
        trace_id, now, rules = context.trace_id, self._clock(), self.rules
        ready: list[tuple[list[ReadableSpan], bool]] = []
        with self._lock:
            decided = self._decided.get(trace_id)
            if decided is not None:  # a span ending after its root
                return [([span], decided)]
            waiting = self._waiting.get(trace_id)
            if waiting is None:
                waiting = self._waiting[trace_id] = _Waiting(now)
            size = span_bytes(span)
            waiting.spans.append(span)
            waiting.size += size
            self._waiting_spans += 1
            self._waiting_bytes += size
            if span.status.status_code is StatusCode.ERROR:
                waiting.failed = True
            attributes = span.attributes or {}
            if (rules.sessions and attributes.get(SESSION_ID) in rules.sessions) or (
                rules.users and attributes.get(USER_ID) in rules.users
            ):
                waiting.named = True
            if _is_local_root(span):
                keep = self._keeps(trace_id, waiting, span)
                ready.append((self._settle(trace_id, keep), keep))
            # The bounds: the oldest waiting traces are kept at once.
            while self._waiting and (
                self._waiting_spans > rules.max_waiting_spans
                or self._waiting_bytes > rules.max_waiting_bytes
                or now - next(iter(self._waiting.values())).since > rules.max_wait_seconds
            ):
                oldest = next(iter(self._waiting))
                self.decided_early += 1
                ready.append((self._settle(oldest, True), True))
        return ready

    def _keeps(self, trace_id: int, waiting: _Waiting, root: ReadableSpan) -> bool:
        rules = self.rules
        if (rules.errors and waiting.failed) or waiting.named:
            return True
        took_ms = ((root.end_time or 0) - (root.start_time or 0)) / 1e6
        if rules.slower_than_ms is not None and took_ms >= rules.slower_than_ms:
            return True
        return rules.by_ratio(trace_id)

    def _settle(self, trace_id: int, keep: bool) -> list[ReadableSpan]:
        """Under the lock: record the decision, and take the trace's waiting spans."""
        waiting = self._waiting.pop(trace_id)
        self._waiting_spans -= len(waiting.spans)
        self._waiting_bytes -= waiting.size
        self._decided[trace_id] = keep
        if len(self._decided) > _DECISIONS_KEPT:
            self._decided.popitem(last=False)
        if keep:
            self.kept += 1
        else:
            self.left_out += 1
        return waiting.spans

    def _hand_on(self, spans: list[ReadableSpan], keep: bool) -> None:
        if self._otlp is not None and self.rules.otlp and keep:
            for span in spans:
                self._otlp.on_end(span)
        if self._sql is not None and self.rules.sql_content:
            for span in spans:
                self._sql.on_end(span if keep else self._stripped(span))

    def _stripped(self, span: ReadableSpan) -> ReadableSpan:
        try:
            return without_content(span)
        except Exception:  # a fault stores the run whole rather than losing it
            self._log.exception("strip", "runspan: could not leave a span's content out")
            return span

    def waiting_spans(self) -> int:
        """Finished spans waiting for their root to end."""
        with self._lock:
            return self._waiting_spans

    def _release_all(self) -> None:
        """Hand on every waiting trace, kept: at flush and shutdown nothing is left behind."""
        with self._lock:
            ready = [(self._settle(trace_id, True), True) for trace_id in list(self._waiting)]
        for spans, keep in ready:
            self._hand_on(spans, keep)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self._release_all()
        flushed = True
        for target in (self._sql, self._otlp):
            if target is not None:
                flushed = target.force_flush(timeout_millis) and flushed
        return flushed

    def shutdown(self) -> None:
        self._release_all()
        for target in (self._sql, self._otlp):
            if target is not None:
                target.shutdown()

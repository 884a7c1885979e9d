"""The tracer's settings, from arguments and the environment, validated when they are built.

An argument wins over its environment variable, which wins over the default. A bad value raises
``ValueError`` at once, naming the variable and what it accepts, so that a typo in a deployment
fails when the app starts rather than silently tracing nothing. ``runspan.configure()`` sets the
process-wide default that handlers made afterwards start from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypedDict

from typing_extensions import Unpack

#: A user's redaction hook: takes one serialized text value, returns what may leave the process.
Redactor = Callable[[str], str]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_VALUE_CHARS_ENV = "RUNSPAN_MAX_VALUE_CHARS"
MAX_RUN_AGE_ENV = "RUNSPAN_MAX_RUN_AGE_SECONDS"

DEFAULT_MAX_VALUE_CHARS = 100_000
# A root run older than this is ended as unfinished: long enough for slow agents, short enough
# that a process that abandons runs does not keep them for its lifetime.
DEFAULT_MAX_RUN_AGE_SECONDS = 3600.0
# Live traces beyond this are ended as unfinished, oldest first, so state stays bounded even
# when ends never come.
DEFAULT_MAX_LIVE_TRACES = 10_000

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _env_bool(name: str, environ: Mapping[str, str]) -> bool | None:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean: use true or false")


def _env_number(name: str, environ: Mapping[str, str]) -> float | None:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


class TracerOptions(TypedDict, total=False):
    """The tracer's settings as keyword arguments, named once: of ``TracingCallbackHandler``,
    ``runspan.configure()`` and :meth:`TracerSettings.build`. See :class:`TracerSettings`."""

    capture_content: bool
    max_value_chars: int
    redact: Redactor
    separate_trace: bool
    max_run_age_seconds: float
    max_live_traces: int
    session_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class TracerSettings:
    """How the callback handler turns runs into spans.

    Attributes:
        capture_content: record inputs, outputs and messages; ``False`` keeps content out.
        max_value_chars: the longest content value kept; longer values are cut with a marker.
        redact: a hook applied to every content value after the built-in secret patterns.
        separate_trace: start every root run in a trace of its own instead of joining the
            application's current span.
        max_run_age_seconds: a root run still open after this long is ended as unfinished.
        max_live_traces: at most this many traces are tracked at once; the oldest is ended.
        session_id: the conversation of runs whose metadata names none (``session_id``,
            ``thread_id`` or ``conversation_id``, as LangGraph's ``thread_id`` does).
        user_id: the user of runs whose metadata names none (``user_id``).
    """

    capture_content: bool = True
    max_value_chars: int = DEFAULT_MAX_VALUE_CHARS
    redact: Redactor | None = None
    separate_trace: bool = False
    max_run_age_seconds: float = DEFAULT_MAX_RUN_AGE_SECONDS
    max_live_traces: int = DEFAULT_MAX_LIVE_TRACES
    session_id: str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("session_id", "user_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name}={value!r}: use a non-empty string, or None")
        for name in ("capture_content", "separate_trace"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: use True or False")
        if not _is_number(self.max_run_age_seconds):
            raise ValueError(
                f"max_run_age_seconds={self.max_run_age_seconds!r}: use a positive number"
            )
        if not isinstance(self.max_value_chars, int) or self.max_value_chars < 64:
            raise ValueError(
                f"max_value_chars={self.max_value_chars!r}: use an integer of at least 64"
            )
        if self.redact is not None and not callable(self.redact):
            raise ValueError("redact must be a callable taking and returning a str")
        if not self.max_run_age_seconds > 0:
            raise ValueError(
                f"max_run_age_seconds={self.max_run_age_seconds!r}: use a positive number"
            )
        if not isinstance(self.max_live_traces, int) or self.max_live_traces < 1:
            raise ValueError(f"max_live_traces={self.max_live_traces!r}: use a positive integer")

    @classmethod
    def build(
        cls,
        *,
        base: TracerSettings | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Unpack[TracerOptions],
    ) -> TracerSettings:
        """Settings from ``options``, then the environment, then ``base`` or the defaults.

        Raises:
            ValueError: a bad value, from an option or the environment.
            TypeError: an option that does not exist.
        """
        unknown = set(options) - set(TracerOptions.__annotations__)
        if unknown:
            raise TypeError(
                f"unknown tracer setting {', '.join(sorted(unknown))}: use"
                f" {', '.join(TracerOptions.__annotations__)}"
            )
        env = os.environ if environ is None else environ
        start = base or cls()
        capture_content = options.get("capture_content")
        max_value_chars = options.get("max_value_chars")
        redact = options.get("redact")
        separate_trace = options.get("separate_trace")
        max_run_age_seconds = options.get("max_run_age_seconds")
        max_live_traces = options.get("max_live_traces")
        chars = max_value_chars
        if chars is None:
            env_chars = _env_number(MAX_VALUE_CHARS_ENV, env)
            if env_chars is not None and (not env_chars.is_integer() or env_chars < 64):
                raise ValueError(
                    f"{MAX_VALUE_CHARS_ENV}={env.get(MAX_VALUE_CHARS_ENV)!r}:"
                    " use an integer of at least 64"
                )
            chars = int(env_chars) if env_chars is not None else start.max_value_chars
        age = max_run_age_seconds
        if age is None:
            env_age = _env_number(MAX_RUN_AGE_ENV, env)
            if env_age is not None and not env_age > 0:
                raise ValueError(
                    f"{MAX_RUN_AGE_ENV}={env.get(MAX_RUN_AGE_ENV)!r}: use a positive number"
                )
            age = env_age if env_age is not None else start.max_run_age_seconds
        capture = capture_content
        if capture is None:
            env_capture = _env_bool(CAPTURE_CONTENT_ENV, env)
            capture = env_capture if env_capture is not None else start.capture_content
        return cls(
            capture_content=capture,
            max_value_chars=chars,
            redact=redact if redact is not None else start.redact,
            separate_trace=start.separate_trace if separate_trace is None else separate_trace,
            max_run_age_seconds=age,
            max_live_traces=start.max_live_traces if max_live_traces is None else max_live_traces,
            session_id=options.get("session_id", start.session_id),
            user_id=options.get("user_id", start.user_id),
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_defaults = TracerSettings()


def default_tracer_settings() -> TracerSettings:
    """The settings a handler starts from: those given to ``runspan.configure()``, if any."""
    return _defaults


def set_default_tracer_settings(settings: TracerSettings) -> None:
    global _defaults  # noqa: PLW0603 - one process-wide default, set by configure()
    _defaults = settings

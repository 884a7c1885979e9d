"""How a run's exception is recorded.

Three kinds of exception reach ``on_*_error``. Control flow: LangGraph raises interrupts and
commands through the run tree (all subclasses of its ``GraphBubbleUp``); they are events, the run
did not fail. Abandonment: ``GeneratorExit`` and ``asyncio.CancelledError`` say the caller stopped
waiting; the run is unfinished, not failed. Everything else is an error.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Literal

from opentelemetry.util.types import AttributeValue

from runspan.config import TracerSettings
from runspan.tracer.content import safe_text

ERROR_TYPE = "error.type"

ErrorKind = Literal["error", "control_flow", "cancelled", "abandoned"]

# LangGraph's bubble-up base class, matched by name so that runspan does not import LangGraph.
_CONTROL_FLOW_BASES = frozenset(
    {"GraphBubbleUp", "GraphInterrupt", "NodeInterrupt", "ParentCommand"}
)


def classify(error: BaseException) -> ErrorKind:
    if isinstance(error, GeneratorExit):
        return "abandoned"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    for cls in type(error).__mro__:
        if cls.__name__ in _CONTROL_FLOW_BASES and cls.__module__.startswith("langgraph"):
            return "control_flow"
    return "error"


def type_name(error: BaseException) -> str:
    """The exception's fully qualified type, as ``error.type`` and ``exception.type`` want it."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def message(error: BaseException, settings: TracerSettings) -> str:
    """The exception's message, with secrets redacted; errors often quote the bad input."""
    try:
        text = str(error)
    except Exception:
        text = f"<{type(error).__qualname__} whose str() failed>"
    return safe_text(text, settings)


def exception_event(error: BaseException, settings: TracerSettings) -> dict[str, AttributeValue]:
    """The attributes of the ``exception`` event, per OpenTelemetry's exception conventions."""
    try:
        stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:
        stack = ""
    return {
        "exception.type": type_name(error),
        "exception.message": message(error, settings),
        "exception.stacktrace": safe_text(stack, settings),
    }

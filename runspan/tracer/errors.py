"""How a run's exception is recorded.

Four kinds of exception reach ``on_*_error``. Control flow: LangGraph raises interrupts and
commands through the run tree (all subclasses of its ``GraphBubbleUp``); they are events, the run
did not fail. Interrupts (``interrupt()`` waiting for a human) are told apart from the other
control flow, since users look for them. Abandonment: ``GeneratorExit`` and
``asyncio.CancelledError`` say the caller stopped waiting; the run is unfinished, not failed.
Everything else is an error.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Literal

from opentelemetry.util.types import AttributeValue

from runspan.attributes import EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE, EXCEPTION_TYPE
from runspan.tracer.content import safe_text
from runspan.tracer.settings import TracerSettings

ErrorKind = Literal["error", "interrupt", "control_flow", "cancelled", "abandoned"]

# LangGraph's classes, matched by name so that runspan does not import LangGraph; interrupts
# subclass GraphBubbleUp and come first in their MRO.
_CONTROL_FLOW: dict[str, ErrorKind] = {
    "GraphInterrupt": "interrupt",
    "NodeInterrupt": "interrupt",
    "GraphBubbleUp": "control_flow",
    "ParentCommand": "control_flow",
}


def classify(error: BaseException) -> ErrorKind:
    if isinstance(error, GeneratorExit):
        return "abandoned"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    for cls in type(error).__mro__:
        kind = _CONTROL_FLOW.get(cls.__name__)
        if kind is not None and cls.__module__.startswith("langgraph"):
            return kind
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
        EXCEPTION_TYPE: type_name(error),
        EXCEPTION_MESSAGE: message(error, settings),
        EXCEPTION_STACKTRACE: safe_text(stack, settings),
    }

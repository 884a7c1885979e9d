"""Tracing every chain in the process, without passing callbacks.

LangChain consults its registered configure hooks whenever it builds a callback manager; a hook
whose ``get()`` returns a handler adds that handler as an inheritable callback. runspan registers
one hook, once, whose slot is process-wide rather than a context variable, so that threads started
without a copied context are traced too.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from langchain_core.tracers.context import register_configure_hook

from runspan.tracer.handler import TracingCallbackHandler


class _ProcessWideSlot:
    """Holds the process's handler; LangChain reads it through ``get()`` like a ContextVar."""

    def __init__(self) -> None:
        self.handler: TracingCallbackHandler | None = None

    def get(self) -> TracingCallbackHandler | None:
        return self.handler


_slot = _ProcessWideSlot()
_registered = False
_lock = threading.Lock()


def instrument(
    handler: TracingCallbackHandler | None = None, **settings: Any
) -> TracingCallbackHandler:
    """Trace every LangChain run in this process; returns the handler that does it.

    Pass a handler, or the keyword arguments of :class:`TracingCallbackHandler` to build one.
    A run that already has a ``TracingCallbackHandler`` among its callbacks is not traced twice.
    """
    global _registered  # noqa: PLW0603 - registration with LangChain happens once per process
    if handler is not None and settings:
        raise TypeError("instrument() takes a handler or handler settings, not both")
    chosen = handler if handler is not None else TracingCallbackHandler(**settings)
    with _lock:
        if not _registered:
            # handle_class makes LangChain skip the hook when such a handler is already there.
            register_configure_hook(cast(Any, _slot), True, TracingCallbackHandler)
            _registered = True
        _slot.handler = chosen
    return chosen


def uninstrument() -> None:
    """Stop tracing runs that were not given a handler explicitly."""
    with _lock:
        _slot.handler = None


def instrumented_handler() -> TracingCallbackHandler | None:
    """The handler :func:`instrument` installed, or ``None``."""
    return _slot.handler

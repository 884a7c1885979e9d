"""Making a run's span the current OpenTelemetry span, without ever leaking it.

Spans that application code or other instrumentations open inside a tool, a lambda or a retriever
should nest under that run, so the run's span has to be current while the run's code executes.
Tracers that ``attach`` in a start callback and ``detach`` in the end callback leak whenever the
two fire in different contexts, or out of order in one, as LangChain's batches do.

runspan attaches only where the end provably comes back to the same context: when the code that
fired the start callback is a plain function or a coroutine, whose frame cannot suspend between
start and end the way a generator does (a stream abandoned mid-way never reports its end). It
restores by value, never by token, so out-of-order ends cannot raise "Failed to detach context";
and it heals a context left holding an ended run's span by walking back to the last context that
holds a live one (or none of runspan's).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import FrameType

from langchain_core.callbacks import manager as _callback_manager
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, get_current_span, set_span_in_context

from runspan.tracer.runs import LiveRun

_RUN_KEY = otel_context.create_key("runspan-run")
# The key under which the API keeps the current span, read off the API rather than imported
# (it is private): a run's context is then built as one mapping, where set_span_in_context and
# set_value would copy the caller's context twice each.
(_SPAN_KEY,) = set_span_in_context(INVALID_SPAN, Context()).keys()
_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
# Frames between LangChain's caller and the hook: the callback manager's and the tracer's own.
_DISPATCH_FILES = frozenset(
    {str(_callback_manager.__file__), *(str(path) for path in Path(__file__).parent.glob("*.py"))}
)


def calling_frame(frame: FrameType | None) -> FrameType | None:
    """The frame of the LangChain code that fired the callback being handled."""
    while frame is not None and frame.f_code.co_filename in _DISPATCH_FILES:
        frame = frame.f_back
    return frame


def can_suspend(frame: FrameType | None) -> bool:
    """Whether ``frame`` may suspend (and be abandoned) between a run's start and end."""
    return frame is None or bool(frame.f_code.co_flags & _SUSPENDABLE)


def healed(ctx: Context) -> Context:
    """``ctx`` without the runspan spans on top of it that have already ended."""
    run = otel_context.get_value(_RUN_KEY, ctx)
    while (
        isinstance(run, LiveRun)
        and run.ended
        and run.context_before is not None
        and get_current_span(ctx) is run.span
    ):
        ctx = run.context_before
        run = otel_context.get_value(_RUN_KEY, ctx)
    return ctx


def heal_current() -> Context:
    """Heal the calling context in place if ended runs sit on top of it; return it."""
    ctx = otel_context.get_current()
    clean = healed(ctx)
    if clean is not ctx:
        otel_context.attach(clean)
    return clean


def current_parent_context(caller_id: int) -> Context:
    """The context a new root run joins: the caller's, healed, without sibling roots.

    A context left holding ended runs is healed in place. Runs that the same caller started and
    made current are the new root's siblings (``batch`` starts every input's run before any of
    them executes), not its parents, so they are skipped.
    """
    clean = heal_current()
    run = otel_context.get_value(_RUN_KEY, clean)
    while (
        isinstance(run, LiveRun)
        and run.caller_id == caller_id
        and run.context_before is not None
        and get_current_span(clean) is run.span
    ):
        clean = run.context_before
        run = otel_context.get_value(_RUN_KEY, clean)
    return clean


def enter(run: LiveRun) -> None:
    """Make ``run``'s span current in the calling context (only call where it provably ends)."""
    before = otel_context.get_current()
    attached = Context({**before, _SPAN_KEY: run.span, _RUN_KEY: run})
    run.context_before = before
    run.context_attached = attached
    # The token is dropped on purpose: the end restores by value (see the module docstring).
    otel_context.attach(attached)


def leave(run: LiveRun) -> None:
    """Restore the context ``run`` entered if it is still on top, else heal what is on top.

    Out of order (a batch), the run's context is under a later one: it is left for that one's
    end to heal. Runs ended early (their root ended, or they expired) are healed away at the
    next callback that ends a run in that context.
    """
    attached, run.context_attached = run.context_attached, None
    before = run.context_before
    if attached is not None and before is not None and otel_context.get_current() is attached:
        otel_context.attach(healed(before))
    else:
        heal_current()

"""Making a run's span the current OpenTelemetry span, without ever leaking it.

Spans that application code or other instrumentations open inside a tool, a lambda or a retriever
should nest under that run, so the run's span has to be current while the run's code executes.
Tracers that ``attach`` in a start callback and ``detach`` in the end callback leak whenever the
two fire in different contexts, or out of order in one, as LangChain's batches do.

runspan attaches only where the end provably comes: when the code that fired the start callback
is a plain function or a coroutine, whose frame cannot suspend between start and end the way a
generator does (a stream abandoned mid-way never reports its end). The end does not always come
back to the same context, though: on the async path LangChain fires chain, model and retriever
ends in a new task, with a copy of the caller's context (``@shielded``), so nothing set there
reaches the coroutine that awaits the run. So the context a run attaches is a :class:`RunContext`,
which the run's end releases in place: from then on it reads as the caller's context, in every
task and thread that holds it. Where the end does come back to the same context, the caller's
context is also attached again by value, never by token, so out-of-order ends cannot raise
"Failed to detach context". Contexts that copied an ended run's span (an application's own
``attach`` inside a run, say) are healed at runspan's next callback in them, by walking back to
the last context that holds a live run (or none of runspan's).
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


class RunContext(Context):
    """The context a run attaches while it executes; released in place when the run ends.

    OpenTelemetry treats contexts as immutable, and every other context is. This one is
    runspan's own and changes exactly once, when :meth:`release` makes it read as the context
    of the run's caller: an async run's end fires in a copy of the awaiting coroutine's
    context, which shares this object with it, so releasing the object is the one change that
    reaches that coroutine.
    """

    # A class default rather than a slot set in __init__: a Python __init__ doubles the cost of
    # building the context, once per run on the callback path.
    released_to: Context | None = None

    def release(self, caller: Context) -> None:
        """Read as ``caller`` from now on.

        Only the span and the run differ from ``caller`` (the run's context was ``caller`` plus
        those two), and both change in one ``dict.update``, atomic under the GIL, so no thread
        ever reads a mix. A key ``caller`` lacks becomes ``None``, which the API reads as unset.
        """
        dict.update(self, {_SPAN_KEY: caller.get(_SPAN_KEY), _RUN_KEY: caller.get(_RUN_KEY)})
        self.released_to = caller  # so that healing can put the caller's own object back


def healed(ctx: Context) -> Context:
    """``ctx`` without the runspan spans on top of it that have already ended."""
    while True:
        if isinstance(ctx, RunContext) and ctx.released_to is not None:
            ctx = ctx.released_to
            continue
        run = otel_context.get_value(_RUN_KEY, ctx)
        if (
            isinstance(run, LiveRun)
            and run.ended
            and run.context_before is not None
            and get_current_span(ctx) is run.span
        ):
            ctx = run.context_before
            continue
        return ctx


def stacked_runs() -> set[int]:
    """The ids (``UUID.int``) of the runs current in the calling context, top to bottom.

    When a root ends here, any of them still open can never end: the code that started it
    ran in this context, below the root's end, and has returned without reporting its end.
    """
    stacked: set[int] = set()
    ctx: Context | None = otel_context.get_current()
    while ctx is not None:
        run = otel_context.get_value(_RUN_KEY, ctx)
        if not isinstance(run, LiveRun):
            break
        stacked.add(run.run_id.int)
        ctx = run.context_before
    return stacked


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
    attached = RunContext({**before, _SPAN_KEY: run.span, _RUN_KEY: run})
    run.context_before = before
    run.context_attached = attached
    # The token is dropped on purpose: the end restores by value (see the module docstring).
    otel_context.attach(attached)


def leave(run: LiveRun) -> None:
    """Release the context ``run`` entered, and attach its caller's again if it is on top.

    Released, the run's context reads as the caller's wherever it is held: in the coroutine
    that awaits an async run, whose end fired in another task, and under later runs of a batch,
    whose ends came out of order. ``run`` must already be marked ended.
    """
    attached, run.context_attached = run.context_attached, None
    before = run.context_before
    if attached is None or before is None:
        heal_current()
        return
    caller = healed(before)
    attached.release(caller)
    if otel_context.get_current() is attached:
        otel_context.attach(caller)
    else:
        heal_current()


def release_all(runs: list[LiveRun]) -> None:
    """Release the contexts of runs ended together (a trace closed with runs still open).

    Every run is marked ended before this is called, so each context is released to the
    nearest caller still live, whichever order the runs come in.
    """
    for run in runs:
        attached, run.context_attached = run.context_attached, None
        if attached is not None and run.context_before is not None:
            attached.release(healed(run.context_before))

"""The machinery that turns run starts and ends into spans, whatever callback reports them.

:class:`RunRecorder` starts a run's span under its parent run (or as a root, joining the
application's current span), makes it current where its end provably comes, records how it
ended, and ends what its root leaves behind. The callback handler
(:class:`~runspan.tracer.handler.TracingCallbackHandler`) is a ``RunRecorder`` that reads
LangChain's callbacks; everything here is O(1) and is called from guarded hooks.
"""

from __future__ import annotations

import sys
import time
from typing import Any
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from runspan.attributes import (
    CONTROL_FLOW_EVENT,
    ERROR_TYPE,
    EXCEPTION_EVENT,
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
    GRAPH_NODE,
    INTERRUPTED,
    METADATA,
    NODE_KEY,
    ORPHAN,
    PARENT_RUN_ID,
    RUN_ID,
    RUN_TYPE,
    TAGS,
    UNFINISHED,
    UNFINISHED_REASON,
)
from runspan.tracer import current, errors, langgraph
from runspan.tracer.content import input_attributes, output_attributes, safe_text
from runspan.tracer.fallback import fallback
from runspan.tracer.identity import identify
from runspan.tracer.redaction import redact
from runspan.tracer.runs import LiveRun, RunRegistry, RunTree
from runspan.tracer.settings import TracerSettings
from runspan.tracer.spans import SpanStarter, record, starter_for

#: Passed for an input or output a callback did not report, or that GenAI attributes carry.
NOT_GIVEN = object()
#: The most distinct lists of tags whose redacted tuples a handler keeps to share.
MAX_SHARED_TAGS = 1024


class RunRecorder:
    """Runs as spans: on ``tracer_provider``, or the global provider when it is ``None``."""

    def __init__(self, tracer_provider: TracerProvider | None, settings: TracerSettings) -> None:
        self.settings = settings
        self._provider = tracer_provider
        self._starter: SpanStarter | None = None
        self._starter_provider: TracerProvider | None = None
        self._runs = RunRegistry(settings.max_live_traces)
        self._max_age_ns = int(settings.max_run_age_seconds * 1e9)
        # Distinct lists of tags, each with its redacted tuple (see _tags); bounded, since an
        # app may put a request id in its tags.
        self._shared_tags: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def _spans(self) -> SpanStarter:
        """The span starter for the provider in use; without one, the global provider, which
        may be set after this handler was made."""
        provider = self._provider or trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):  # none is set: runspan's own
            own = fallback()
            if own is not None:
                provider = own.get()
        starter = self._starter
        if starter is None or provider is not self._starter_provider:
            from runspan import __version__  # noqa: PLC0415 - the package imports this module

            starter = self._starter = starter_for(provider, __version__)
            self._starter_provider = provider
        return starter

    def state_sizes(self) -> dict[str, int]:
        """How many runs and traces the handler holds: all zero once every run has ended."""
        return self._runs.sizes()

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        *,
        name: str,
        kind: SpanKind,
        run_type: str,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        inputs: Any,
        attributes: dict[str, AttributeValue],
        operation: str | None = None,
    ) -> None:
        start_ns = time.time_ns()
        caller = current.calling_frame(sys._getframe(1))
        if self._runs.get(run_id) is not None:
            return  # the same run reported twice (two managers sharing this handler)
        run_id_text = str(run_id)
        attributes[RUN_ID] = run_id_text
        attributes[RUN_TYPE] = run_type
        node = self._describe(attributes, tags, metadata, inputs)

        parent = self._runs.parent(parent_run_id) if parent_run_id is not None else None
        parent_span: Span | None = None
        root_context: Context | None = None
        if parent is not None:
            attributes[PARENT_RUN_ID] = parent.run_id_text
            parent_span = parent.span
            if parent.ended:  # a late child: link to what is left of its parent
                parent_span = NonRecordingSpan(parent_span.get_span_context())
            tree = parent.trace
        else:
            # A root, or a child whose parent runspan never saw (an orphan, made a root).
            if parent_run_id is not None:
                attributes[PARENT_RUN_ID] = str(parent_run_id)
                attributes[ORPHAN] = True
            self._expire_old_traces(start_ns)
            tree = RunTree(run_id, start_ns)
            langgraph.note_thread(tree, metadata, inputs, self._runs, attributes)
            root_context = (
                Context()
                if self.settings.separate_trace
                else current.current_parent_context(id(caller))
            )

        identify(tree, metadata, self.settings, attributes, root=parent is None)
        if node == name and metadata is not None:  # a LangGraph node's own run
            langgraph.note_attempt(tree, metadata, attributes)
            if parent is not None:
                parent.graph = True
        span = self._spans().start(
            name,
            kind,
            attributes,
            start_ns=start_ns,
            run_id=run_id,
            parent_run_span=parent_span,
            root_context=root_context,
            span_ids=tree.span_ids,
        )
        may_never_end = current.can_suspend(caller)
        run = LiveRun(
            run_id,
            run_id_text,
            span,
            tree,
            start_ns,
            operation,
            may_never_end=may_never_end,
            caller_id=id(caller),
        )
        if not self._runs.add(run):
            return
        # Only where the code that fired the callback cannot suspend before the end does the
        # span become current (see runspan.tracer.current).
        if not may_never_end:
            current.enter(run)

    def _describe(
        self,
        attributes: dict[str, AttributeValue],
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        inputs: Any,
    ) -> str | None:
        """Record a run's tags, metadata and input; return its LangGraph node, if any."""
        if tags:
            attributes[TAGS] = self._tags(tags)
        node = None
        if metadata:
            # LangChain's ls_* and lc_* keys describe the model (already in gen_ai.*) and
            # LangChain's own versions; what is left is the application's.
            own = {k: v for k, v in metadata.items() if not k.startswith(("ls_", "lc_"))}
            if own:
                attributes[METADATA] = safe_text(own, self.settings)
            found = metadata.get(NODE_KEY)
            if isinstance(found, str):
                node = found
                attributes[GRAPH_NODE] = node
        if inputs is not NOT_GIVEN:  # model, tool and retriever runs bring GenAI content instead
            attributes.update(input_attributes(inputs, self.settings))
        return node

    def _tags(self, tags: list[str]) -> tuple[str, ...]:
        """A run's tags, redacted like content: a key passed as a tag must not be stored either.

        Without a redaction hook of the user's, the same tags share one tuple: LangChain gives
        every step of a sequence the same ``seq:step:N``, and a tuple made per span is one more
        object that lives until the span is written, bringing the garbage collector's next pass
        closer (see BENCHMARKS.md). A hook may do anything, so with one every span's tags go
        through it."""
        hook = self.settings.redact
        if hook is None:
            key = tuple(tags)
            try:
                shared = self._shared_tags.get(key)
            except TypeError:  # a tag that cannot be a key: the tuple is made for this span
                shared = None
            else:
                if shared is None:
                    shared = tuple(redact(str(tag), None) for tag in tags)
                    if len(self._shared_tags) < MAX_SHARED_TAGS:
                        self._shared_tags[key] = shared
            if shared is not None:
                return shared
        return tuple(redact(str(tag), hook) for tag in tags)

    def _end(
        self,
        run_id: UUID,
        outputs: Any,
        inputs: Any,
        attributes: dict[str, AttributeValue] | None = None,
    ) -> None:
        end_ns = time.time_ns()
        run = self._runs.remove(run_id)
        if run is None:  # ended early (root ended, or expired): only its context may remain
            current.heal_current()
            return
        try:
            ending = output_attributes(outputs, self.settings) if outputs is not NOT_GIVEN else {}
            if inputs is not NOT_GIVEN and inputs is not None:
                ending.update(input_attributes(inputs, self.settings))
            if attributes:
                ending.update(attributes)
            record(run.span, ending)
        finally:  # whatever failed above, the span ends and the trace is released
            self._finish(run, end_ns)

    def _fail(self, run_id: UUID, error: BaseException, inputs: Any = NOT_GIVEN) -> None:
        end_ns = time.time_ns()
        run = self._runs.remove(run_id)
        if run is None:
            current.heal_current()
            return
        try:
            span = run.span
            if inputs is not NOT_GIVEN and inputs is not None:
                record(span, input_attributes(inputs, self.settings))
            kind = errors.classify(error)
            if kind == "error":
                event = errors.exception_event(error, self.settings)
                span.add_event(EXCEPTION_EVENT, event, end_ns)
                record(span, {ERROR_TYPE: errors.type_name(error)})
                span.set_status(Status(StatusCode.ERROR, errors.message(error, self.settings)))
            elif kind in ("interrupt", "control_flow"):
                if kind == "interrupt":
                    record(span, {INTERRUPTED: True})
                    run.trace.interrupted = True
                span.add_event(
                    CONTROL_FLOW_EVENT,
                    {
                        EXCEPTION_TYPE: errors.type_name(error),
                        EXCEPTION_MESSAGE: errors.message(error, self.settings),
                    },
                    end_ns,
                )
            else:
                record(span, {UNFINISHED: True, UNFINISHED_REASON: kind})
        finally:
            self._finish(run, end_ns)

    def _finish(self, run: LiveRun, end_ns: int) -> None:
        run.ended = True
        tree = run.trace
        try:
            is_root = tree.root_id.int == run.run_id.int
            if is_root and tree.interrupted:
                # The graph is paused, not done: say so on the root too, and remember the
                # thread, so that the invocation resuming it links here.
                record(run.span, {INTERRUPTED: True})
                if tree.thread_id is not None:
                    trace_id = run.span.get_span_context().trace_id
                    self._runs.remember_interrupt(tree.thread_id, f"{trace_id:032x}")
            if run.graph:
                record(run.span, langgraph.graph_operation(run.span, tree))
            run.span.end(end_time=end_ns)
            if is_root:
                leftovers = self._runs.end_root(tree, current.stacked_runs())
                self._end_leftovers(leftovers, end_ns, "root_ended")
        finally:
            # Last, so that the runs the root's end just closed are released with it.
            current.leave(run)

    def _event(self, run_id: UUID, name: str, attributes: dict[str, AttributeValue]) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            run.span.add_event(name, attributes)

    def _end_leftovers(self, leftovers: list[LiveRun], end_ns: int, reason: str) -> None:
        """End runs whose end will never come, as unfinished."""
        for leftover in leftovers:
            leftover.ended = True
            record(leftover.span, {UNFINISHED: True, UNFINISHED_REASON: reason})
            leftover.span.end(end_time=end_ns)
        # Released, not left: the contexts they entered may not be this one.
        current.release_all(leftovers)

    def _expire_old_traces(self, now_ns: int) -> None:
        for expired in self._runs.expired_traces(now_ns, self._max_age_ns):
            self._end_leftovers(self._runs.close_trace(expired), now_ns, "expired")

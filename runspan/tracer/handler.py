"""The LangChain callback handler that turns every run into an OpenTelemetry span.

It speaks only the OpenTelemetry API, so it works with runspan's provider or an application's own.
Every hook is O(1), does no I/O and never raises into the chain: spans go to the provider's span
processors, which batch and export off the callback path.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanKind,
    Status,
    StatusCode,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue
from typing_extensions import Unpack

from runspan.attributes import (
    ATTEMPT,
    CONTROL_FLOW_EVENT,
    ERROR_TYPE,
    EXCEPTION_EVENT,
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
    FIRST_CHUNK_EVENT,
    GRAPH_NODE,
    INTERRUPTED,
    METADATA,
    NODE_KEY,
    ORPHAN,
    PARENT_RUN_ID,
    REQUEST_MODEL,
    RESUMES_TRACE,
    RETRY_ATTEMPT,
    RUN_ID,
    RUN_TYPE,
    TAGS,
    TASK_KEY,
    THREAD_KEY,
    TIME_TO_FIRST_CHUNK,
    TOOL_NAME,
    UNFINISHED,
    UNFINISHED_REASON,
)
from runspan.tracer import current, errors, genai
from runspan.tracer.content import input_attributes, output_attributes, safe_text
from runspan.tracer.guard import never_raises
from runspan.tracer.runs import LiveRun, RunRegistry, RunTree
from runspan.tracer.settings import TracerOptions, TracerSettings, default_tracer_settings
from runspan.tracer.spans import SpanStarter, record, starter_for

_NO_INPUT = object()


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        name = serialized.get("name")
        if isinstance(name, str) and name:
            return name
        ids = serialized.get("id")
        if isinstance(ids, list) and ids and isinstance(ids[-1], str):
            return ids[-1]
    return default


class TracingCallbackHandler(BaseCallbackHandler):
    """Records every LangChain run as an OpenTelemetry span.

    Attach it like any callback handler, ``chain.with_config(callbacks=[handler])`` or
    ``chain.invoke(x, config={"callbacks": [handler]})``, or trace every chain in the process
    with :func:`runspan.instrument`.

    Args:
        tracer_provider: where the spans go; the global provider when omitted.
        separate_trace: start each root run in a new trace instead of joining the application's
            current span.
        capture_content: record inputs and outputs; defaults to
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``, else ``True``.
        max_value_chars: the longest content value recorded; longer ones are cut with a marker.
        redact: called on every content value after the built-in secret patterns.
        max_run_age_seconds: a root run open longer than this is ended as unfinished.
        max_live_traces: the most traces tracked at once; beyond it the oldest is ended.

    Arguments left out take the values given to :func:`runspan.configure`, then the environment.
    """

    run_inline = True  # called in the run's own thread and context, in order
    raise_error = False

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        **settings: Unpack[TracerOptions],
    ) -> None:
        super().__init__()
        self.settings = TracerSettings.build(base=default_tracer_settings(), **settings)
        self._provider = tracer_provider
        self._starter: SpanStarter | None = None
        self._starter_provider: TracerProvider | None = None
        self._runs = RunRegistry(self.settings.max_live_traces)
        self._max_age_ns = int(self.settings.max_run_age_seconds * 1e9)

    # LangChain copies handlers when it builds child callback managers; every copy must be
    # this handler, or runs started through a copy would be unknown to the original.
    def __copy__(self) -> TracingCallbackHandler:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TracingCallbackHandler:
        return self

    def _spans(self) -> SpanStarter:
        """The span starter for the provider in use; without one, the global provider, which
        may be set after this handler was made."""
        provider = self._provider or trace.get_tracer_provider()
        starter = self._starter
        if starter is None or provider is not self._starter_provider:
            from runspan import __version__  # noqa: PLC0415 - the package imports this module

            starter = self._starter = starter_for(provider, __version__)
            self._starter_provider = provider
        return starter

    def state_sizes(self) -> dict[str, int]:
        """How many runs and traces the handler holds: all zero once every run has ended."""
        return self._runs.sizes()

    # --- chains: sequences, prompts, parsers, lambdas, LangGraph graphs and nodes -------------

    @never_raises
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        run_type = kwargs.get("run_type") or "chain"
        # LangChain's own name for a run that has none (a lambda used as a conditional edge).
        name = _run_name(serialized, kwargs, "Unnamed")
        self._start(
            run_id,
            parent_run_id,
            name=name,
            kind=SpanKind.INTERNAL,
            run_type=run_type,
            tags=tags,
            metadata=metadata,
            inputs=inputs,
            attributes={},
        )

    @never_raises
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        # Streams start with a placeholder input and report the real one at the end.
        self._end(run_id, outputs, kwargs.get("inputs", _NO_INPUT))

    @never_raises
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # A stream that fails or is abandoned reports its real input here, as at a stream's end.
        self._fail(run_id, error, kwargs.get("inputs", _NO_INPUT))

    # --- models ---------------------------------------------------------------------------

    @never_raises
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # LangChain starts one run per prompt, so there is one message list.
        prompt: Any = messages[0] if len(messages) == 1 else messages
        self._start_model(
            run_id,
            parent_run_id,
            operation=genai.CHAT,
            serialized=serialized,
            prompt=prompt,
            tags=tags,
            metadata=metadata,
            kwargs=kwargs,
        )

    @never_raises
    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        prompt: Any = prompts[0] if len(prompts) == 1 else prompts
        self._start_model(
            run_id,
            parent_run_id,
            operation=genai.TEXT_COMPLETION,
            serialized=serialized,
            prompt=prompt,
            tags=tags,
            metadata=metadata,
            kwargs=kwargs,
        )

    @never_raises
    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is None or run.first_chunk_ns is not None:
            return
        now = time.time_ns()
        run.first_chunk_ns = now
        record(run.span, {TIME_TO_FIRST_CHUNK: (now - run.start_ns) / 1e9})
        run.span.add_event(FIRST_CHUNK_EVENT, timestamp=now)

    @never_raises
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        generations = response.generations[0] if response.generations else []
        attributes = genai.response_attributes(generations, response.llm_output)
        run = self._runs.get(run_id)
        if run is not None and run.operation == genai.CHAT:
            outputs: Any = [getattr(g, "message", g.text) for g in generations]
        else:
            outputs = [g.text for g in generations]
        self._end(run_id, outputs[0] if len(outputs) == 1 else outputs, _NO_INPUT, attributes)

    @never_raises
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    # --- tools and retrievers -------------------------------------------------------------

    @never_raises
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        tool = _run_name(serialized, kwargs, "tool")
        attributes = genai.tool_attributes(tool, serialized, kwargs.get("tool_call_id"))
        self._start(
            run_id,
            parent_run_id,
            name=f"{genai.EXECUTE_TOOL} {tool}",
            kind=SpanKind.INTERNAL,
            run_type="tool",
            tags=tags,
            metadata=metadata,
            inputs=input_str if inputs is None else inputs,
            attributes=attributes,
        )

    @never_raises
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, output, _NO_INPUT)

    @never_raises
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    @never_raises
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = _run_name(serialized, kwargs, "retriever")
        self._start(
            run_id,
            parent_run_id,
            name=name,
            kind=SpanKind.CLIENT,
            run_type="retriever",
            tags=tags,
            metadata=metadata,
            inputs=query,
            attributes={},
        )

    @never_raises
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, documents, _NO_INPUT)

    @never_raises
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    # --- what happens inside a run: span events -------------------------------------------

    @never_raises
    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        attributes: dict[str, AttributeValue] = {TOOL_NAME: str(action.tool)}
        if self.settings.capture_content:
            attributes["tool_input"] = safe_text(action.tool_input, self.settings)
            attributes["log"] = safe_text(action.log, self.settings)
        self._event(run_id, "agent_action", attributes)

    @never_raises
    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        attributes: dict[str, AttributeValue] = {}
        if self.settings.capture_content:
            attributes["return_values"] = safe_text(finish.return_values, self.settings)
        self._event(run_id, "agent_finish", attributes)

    @never_raises
    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        attributes: dict[str, AttributeValue] = {}
        attempt = getattr(retry_state, "attempt_number", None)
        if isinstance(attempt, int):
            attributes[RETRY_ATTEMPT] = attempt
        outcome = getattr(retry_state, "outcome", None)
        error = outcome.exception() if outcome is not None and outcome.failed else None
        if error is not None:
            attributes[EXCEPTION_TYPE] = errors.type_name(error)
            attributes[EXCEPTION_MESSAGE] = errors.message(error, self.settings)
        self._event(run_id, "retry", attributes)

    @never_raises
    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        attributes: dict[str, AttributeValue] = {}
        if self.settings.capture_content:
            attributes["data"] = safe_text(data, self.settings)
        self._event(run_id, str(name), attributes)

    # --- the machinery --------------------------------------------------------------------

    def _start_model(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        *,
        operation: str,
        serialized: dict[str, Any] | None,
        prompt: Any,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        params = kwargs.get("invocation_params")
        attributes = genai.request_attributes(operation, metadata, params)
        model = attributes.get(REQUEST_MODEL)
        name = f"{operation} {model}" if model else _run_name(serialized, kwargs, operation)
        self._start(
            run_id,
            parent_run_id,
            name=name,
            kind=SpanKind.CLIENT,
            run_type="llm",
            tags=tags,
            metadata=metadata,
            inputs=prompt,
            attributes=attributes,
            operation=operation,
        )

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
        if tags:
            attributes[TAGS] = tuple(map(str, tags))
        node = None
        if metadata:
            # LangChain's ls_* and lc_* keys describe the model (already in gen_ai.*) and
            # LangChain's own versions; what is left is the application's.
            own = {k: v for k, v in metadata.items() if not k.startswith(("ls_", "lc_"))}
            if own:
                attributes[METADATA] = safe_text(own, self.settings)
            node = metadata.get(NODE_KEY)
            if isinstance(node, str):
                attributes[GRAPH_NODE] = node
        attributes.update(input_attributes(inputs, self.settings))

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
            thread = metadata.get(THREAD_KEY) if metadata else None
            if isinstance(thread, str):
                tree.thread_id = thread
                # LangGraph's Command(resume=...), matched by shape: runspan does not import it.
                if getattr(inputs, "resume", None) is not None:
                    resumed = self._runs.take_interrupt(thread)
                    if resumed is not None:
                        attributes[RESUMES_TRACE] = resumed
            root_context = (
                Context()
                if self.settings.separate_trace
                else current.current_parent_context(id(caller))
            )

        if node == name and metadata is not None:  # a LangGraph node's own run
            attempt = self._attempt(tree, metadata.get(TASK_KEY))
            if attempt > 1:
                attributes[ATTEMPT] = attempt
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

    @staticmethod
    def _attempt(tree: RunTree, task: Any) -> int:
        """Which attempt of its LangGraph task a node run is: RetryPolicy runs a failed node
        again, as a new run of the same task (checkpoint namespace)."""
        if not isinstance(task, str):
            return 1
        if tree.attempts is None:
            tree.attempts = {}
        attempt = tree.attempts.get(task, 0) + 1
        tree.attempts[task] = attempt
        return attempt

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
            ending = output_attributes(outputs, self.settings)
            if inputs is not _NO_INPUT and inputs is not None:
                ending.update(input_attributes(inputs, self.settings))
            if attributes:
                ending.update(attributes)
            record(run.span, ending)
        finally:  # whatever failed above, the span ends and the trace is released
            self._finish(run, end_ns)

    def _fail(self, run_id: UUID, error: BaseException, inputs: Any = _NO_INPUT) -> None:
        end_ns = time.time_ns()
        run = self._runs.remove(run_id)
        if run is None:
            current.heal_current()
            return
        try:
            span = run.span
            if inputs is not _NO_INPUT and inputs is not None:
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

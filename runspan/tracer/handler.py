"""The LangChain callback handler that turns every run into an OpenTelemetry span.

It speaks only the OpenTelemetry API, so it works with runspan's provider or an application's own.
Every hook is O(1), does no I/O and never raises into the chain: spans go to the provider's span
processors, which batch and export off the callback path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from opentelemetry import trace
from opentelemetry.trace import (
    SpanKind,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue
from typing_extensions import Unpack

from runspan.attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
    FIRST_CHUNK_EVENT,
    OPERATION,
    REQUEST_MODEL,
    RETRY_ATTEMPT,
    TIME_TO_FIRST_CHUNK,
    TIME_TO_FIRST_TOKEN,
    TOOL_NAME,
)
from runspan.tracer import content, errors, genai
from runspan.tracer.content import safe_text
from runspan.tracer.fallback import fallback
from runspan.tracer.guard import never_raises
from runspan.tracer.messages import produced_before_error
from runspan.tracer.recorder import NOT_GIVEN, RunRecorder
from runspan.tracer.settings import TracerOptions, TracerSettings, default_tracer_settings
from runspan.tracer.spans import record


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


def _has_content(token: Any, chunk: Any) -> bool:
    """Whether a streamed chunk carries text, content blocks or a tool call's delta."""
    if isinstance(token, str) and token:
        return True
    message = getattr(chunk, "message", None)
    return bool(getattr(message, "content", None) or getattr(message, "tool_call_chunks", None))


class TracingCallbackHandler(RunRecorder, BaseCallbackHandler):
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
        session_id: the conversation (``session.id``) of runs whose metadata names none
            (``session_id``, LangGraph's ``thread_id``, ``conversation_id``).
        user_id: the user (``user.id``) of runs whose metadata names none (``user_id``).

    Arguments left out take the values given to :func:`runspan.configure`, then the environment.
    """

    run_inline = True  # called in the run's own thread and context, in order
    raise_error = False

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        **settings: Unpack[TracerOptions],
    ) -> None:
        BaseCallbackHandler.__init__(self)
        built = TracerSettings.build(base=default_tracer_settings(), **settings)
        own = fallback()
        falls_back = isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        if tracer_provider is None and falls_back and own is not None:
            # A bad variable fails here, not at the first run (where it could only be logged);
            # with a provider of the app's, runspan's variables are not read at all.
            own.check()
        RunRecorder.__init__(self, tracer_provider, built)

    # LangChain copies handlers when it builds child callback managers; every copy must be
    # this handler, or runs started through a copy would be unknown to the original.
    def __copy__(self) -> TracingCallbackHandler:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TracingCallbackHandler:
        return self

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
        self._end(run_id, outputs, kwargs.get("inputs", NOT_GIVEN))

    @never_raises
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # A stream that fails or is abandoned reports its real input here, as at a stream's end.
        self._fail(run_id, error, kwargs.get("inputs", NOT_GIVEN))

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
        prompt = messages[0] if messages else []
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
        prompt = prompts[:1]  # one run per prompt: a user message
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
        if run is None or run.first_token_ns is not None:
            return
        now = time.time_ns()
        if run.first_chunk_ns is None:
            run.first_chunk_ns = now
            record(run.span, {TIME_TO_FIRST_CHUNK: (now - run.start_ns) / 1e9})
            run.span.add_event(FIRST_CHUNK_EVENT, timestamp=now)
        # Providers often open a stream with an empty chunk: a token is what carries content.
        if _has_content(token, kwargs.get("chunk")):
            run.first_token_ns = now
            record(run.span, {TIME_TO_FIRST_TOKEN: (now - run.start_ns) / 1e9})

    @never_raises
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        generations = response.generations[0] if response.generations else []
        attributes = genai.response_attributes(generations, response.llm_output)
        attributes.update(content.model_output_attributes(generations, self.settings))
        self._end(run_id, NOT_GIVEN, NOT_GIVEN, attributes)

    @never_raises
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # A stream that fails reports what it produced so far: kept, ended by the error.
        produced = produced_before_error(kwargs.get("response"))
        run = self._runs.get(run_id)
        if run is not None and produced:
            record(run.span, content.model_output_attributes(produced, self.settings, failed=True))
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
        arguments = input_str if inputs is None else inputs
        attributes.update(content.tool_arguments(arguments, self.settings))
        self._start(
            run_id,
            parent_run_id,
            name=f"{genai.EXECUTE_TOOL} {tool}",
            kind=SpanKind.INTERNAL,
            run_type="tool",
            tags=tags,
            metadata=metadata,
            inputs=NOT_GIVEN,
            attributes=attributes,
        )
        self._mark_agentic(run_id)

    @never_raises
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, NOT_GIVEN, NOT_GIVEN, content.tool_result(output, self.settings))

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
            inputs=NOT_GIVEN,
            attributes={
                OPERATION: genai.RETRIEVAL,
                **content.retrieval_query(query, self.settings),
            },
        )

    @never_raises
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, NOT_GIVEN, NOT_GIVEN, content.retrieved(documents, self.settings))

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

    # --- models, continued ------------------------------------------------------------------

    def _mark_agentic(self, run_id: UUID) -> None:
        """A model offered tools, or a tool run: the graphs of this trace are agents."""
        run = self._runs.get(run_id)
        if run is not None:
            run.trace.agentic = True

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
        tools = params.get("tools") if isinstance(params, Mapping) else None
        attributes.update(content.model_input_attributes(prompt, tools, self.settings))
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
            inputs=NOT_GIVEN,
            attributes=attributes,
            operation=operation,
        )
        if tools:
            self._mark_agentic(run_id)

"""Inputs and outputs as capped, redacted attributes: one copy of each run's content.

Model, tool and retriever runs carry OpenTelemetry's GenAI content attributes, the names Jaeger's
GenAI tab and other backends read: a model's system instructions, input and output messages and
the tools it was offered; a tool call's arguments and result; a retrieval's query and documents.
They stay valid JSON when capped (each string keeps its share of the cap, with a marker).
Other runs (chains, prompts, parsers, graphs) carry ``input.value`` / ``output.value`` with a
mime type beside each, as OpenInference does; one cut at the cap becomes ``text/plain``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import ToolMessage
from opentelemetry.util.types import AttributeValue

from runspan.attributes import (
    INPUT_MESSAGES,
    INPUT_MIME_TYPE,
    INPUT_VALUE,
    JSON_MIME,
    OUTPUT_MESSAGES,
    OUTPUT_MIME_TYPE,
    OUTPUT_VALUE,
    RETRIEVAL_DOCUMENTS,
    RETRIEVAL_QUERY,
    SYSTEM_INSTRUCTIONS,
    TEXT_MIME,
    TOOL_CALL_ARGUMENTS,
    TOOL_CALL_RESULT,
    TOOL_DEFINITIONS,
)
from runspan.jsoncut import cut_strings
from runspan.tracer import messages
from runspan.tracer.redaction import redact
from runspan.tracer.serialize import to_json
from runspan.tracer.settings import TracerSettings

# Redaction looks this far past the cap, so that a secret straddling the cut is still matched
# whole, while a huge value is never scanned end to end.
_REDACTION_MARGIN = 512


def capped(text: str, limit: int, original_size: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters with a marker naming the original size."""
    if original_size <= limit:
        return text, False
    marker = f"...[runspan: truncated, {original_size} chars in all]"
    return text[: max(0, limit - len(marker))] + marker, True


def redacted_and_capped(text: str, settings: TracerSettings) -> tuple[str, bool]:
    """Redact, then cap; a long text is cut near the cap before it is scanned."""
    size = len(text)
    limit = settings.max_value_chars
    if size <= limit:  # the common case, kept to one call
        return redact(text, settings.redact), False
    return capped(redact(text[: limit + _REDACTION_MARGIN], settings.redact), limit, size)


def safe_text(value: Any, settings: TracerSettings) -> str:
    """Any value as JSON text (a string stays itself), redacted, then capped."""
    text = value if isinstance(value, str) else to_json(value)
    return redacted_and_capped(text, settings)[0]


def content_attributes(
    value: Any, settings: TracerSettings, value_key: str, mime_key: str
) -> dict[str, AttributeValue]:
    """The value and mime-type attributes of one side of a run, or none if capture is off."""
    if not settings.capture_content:
        return {}
    text, was_cut = redacted_and_capped(to_json(value), settings)
    return {value_key: text, mime_key: TEXT_MIME if was_cut else JSON_MIME}


def input_attributes(value: Any, settings: TracerSettings) -> dict[str, AttributeValue]:
    return content_attributes(value, settings, INPUT_VALUE, INPUT_MIME_TYPE)


def output_attributes(value: Any, settings: TracerSettings) -> dict[str, AttributeValue]:
    return content_attributes(value, settings, OUTPUT_VALUE, OUTPUT_MIME_TYPE)


def bounded_json(value: Any, settings: TracerSettings) -> str:
    """``value`` as JSON text, redacted and capped, that is still JSON: an attribute whose
    schema readers validate (the GenAI messages) cannot be cut mid-text like ``input.value``.
    Over the cap, each string keeps its share of ``max_value_chars`` with a marker."""
    text = to_json(value)
    if len(text) <= settings.max_value_chars:  # the common case: one pass
        return redact(text, settings.redact)
    hook = settings.redact

    def cut(value: str, kept: int) -> str:
        start = redact(value[: kept + _REDACTION_MARGIN], hook)[:kept]
        return f"{start}...[runspan: truncated, {len(value)} chars in all]"

    kept = cut_strings(json.loads(text), settings.max_value_chars, cut, lambda t: redact(t, hook))
    return to_json(kept)


def _text_or_json(value: Any, settings: TracerSettings) -> str:
    """A tool's or a query's value: a string as itself (redacted, capped), else JSON."""
    if isinstance(value, str):
        return redacted_and_capped(value, settings)[0]
    return bounded_json(value, settings)


def model_input_attributes(
    prompt: Sequence[Any], tools: Any, settings: TracerSettings
) -> dict[str, AttributeValue]:
    """A model run's system instructions, input messages and the tools it was offered."""
    if not settings.capture_content:
        return {}
    instructions, rest = messages.split_system(prompt)
    attributes: dict[str, AttributeValue] = {INPUT_MESSAGES: bounded_json(rest, settings)}
    if instructions:
        attributes[SYSTEM_INSTRUCTIONS] = bounded_json(instructions, settings)
    if tools:
        attributes[TOOL_DEFINITIONS] = bounded_json(messages.tool_definitions(tools), settings)
    return attributes


def model_output_attributes(
    generations: Sequence[Any], settings: TracerSettings, *, failed: bool = False
) -> dict[str, AttributeValue]:
    """A model run's output messages (``failed``: what a stream produced before its error)."""
    if not settings.capture_content or not generations:
        return {}
    produced = messages.output_messages(generations, failed=failed)
    return {OUTPUT_MESSAGES: bounded_json(produced, settings)}


def tool_arguments(value: Any, settings: TracerSettings) -> dict[str, AttributeValue]:
    if not settings.capture_content:
        return {}
    return {TOOL_CALL_ARGUMENTS: _text_or_json(value, settings)}


def tool_result(value: Any, settings: TracerSettings) -> dict[str, AttributeValue]:
    if not settings.capture_content:
        return {}
    if isinstance(value, ToolMessage):  # a tool called with a tool call returns its message
        value = value.content
    return {TOOL_CALL_RESULT: _text_or_json(value, settings)}


def retrieval_query(query: Any, settings: TracerSettings) -> dict[str, AttributeValue]:
    if not settings.capture_content:
        return {}
    return {RETRIEVAL_QUERY: _text_or_json(query, settings)}


def retrieved(documents: Sequence[Any], settings: TracerSettings) -> dict[str, AttributeValue]:
    if not settings.capture_content:
        return {}
    entries = messages.retrieved_documents(documents)
    return {RETRIEVAL_DOCUMENTS: bounded_json(entries, settings)}

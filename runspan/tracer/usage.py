"""Token usage from every shape LangChain models report it in.

Sources, in order of trust: ``AIMessage.usage_metadata`` (LangChain's normalized form, also summed
over streamed chunks), then the provider's raw counts in ``llm_output["token_usage"]`` or
``["usage"]``, then the same in the message's ``response_metadata``. A count that no source
reports stays absent: unknown is not zero.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from runspan.attributes import (
    CACHE_CREATION_TOKENS,
    CACHE_READ_TOKENS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    REASONING_TOKENS,
)

# Where each count sits in the raw shapes providers report: a path of keys per attribute,
# first match wins. OpenAI: prompt/completion; Anthropic: input/output and cache_*;
# Gemini: *_token_count; Ollama: *eval_count.
_RAW_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    INPUT_TOKENS: (
        ("input_tokens",),
        ("prompt_tokens",),
        ("prompt_token_count",),
        ("prompt_eval_count",),
    ),
    OUTPUT_TOKENS: (
        ("output_tokens",),
        ("completion_tokens",),
        ("candidates_token_count",),
        ("eval_count",),
    ),
    CACHE_READ_TOKENS: (
        ("input_token_details", "cache_read"),
        ("prompt_tokens_details", "cached_tokens"),
        ("cache_read_input_tokens",),
        ("cached_content_token_count",),
    ),
    CACHE_CREATION_TOKENS: (
        ("input_token_details", "cache_creation"),
        ("cache_creation_input_tokens",),
    ),
    REASONING_TOKENS: (
        ("output_token_details", "reasoning"),
        ("completion_tokens_details", "reasoning_tokens"),
        ("thoughts_token_count",),
    ),
}


def _count(value: object) -> int | None:
    # bool is an int subclass; a True here is a flag, not a count.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _lookup(usage: Mapping[str, Any], path: tuple[str, ...]) -> int | None:
    node: Any = usage
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return _count(node)


def usage_attributes(usage: Mapping[str, Any]) -> dict[str, int]:
    """The GenAI usage attributes found in one usage mapping of any known shape."""
    found: dict[str, int] = {}
    for attribute, paths in _RAW_PATHS.items():
        for path in paths:
            value = _lookup(usage, path)
            if value is not None:
                found[attribute] = value
                break
    return found


def _usage_sources(
    messages: list[Any], llm_output: Mapping[str, Any] | None
) -> Iterator[Mapping[str, Any]]:
    for message in messages:
        usage = getattr(message, "usage_metadata", None)
        if isinstance(usage, Mapping):
            yield usage
    if isinstance(llm_output, Mapping):
        for key in ("token_usage", "usage", "usage_metadata"):
            raw = llm_output.get(key)
            if isinstance(raw, Mapping):
                yield raw
    for message in messages:
        metadata = getattr(message, "response_metadata", None)
        if isinstance(metadata, Mapping):
            for key in ("token_usage", "usage", "usage_metadata"):
                raw = metadata.get(key)
                if isinstance(raw, Mapping):
                    yield raw
            # Ollama reports its counts at the top level of response_metadata.
            if "prompt_eval_count" in metadata or "eval_count" in metadata:
                yield metadata


def _from_usage_metadata(usage: Mapping[str, Any]) -> dict[str, int] | None:
    """LangChain's normalized shape, read directly: the common case, so no path search."""
    found: dict[str, int] = {}
    for attribute, key in ((INPUT_TOKENS, "input_tokens"), (OUTPUT_TOKENS, "output_tokens")):
        value = _count(usage.get(key))
        if value is None:
            return None
        found[attribute] = value
    details = usage.get("input_token_details")
    if details:
        for attribute, key in (
            (CACHE_READ_TOKENS, "cache_read"),
            (CACHE_CREATION_TOKENS, "cache_creation"),
        ):
            value = _count(details.get(key))
            if value is not None:
                found[attribute] = value
    details = usage.get("output_token_details")
    if details:
        value = _count(details.get("reasoning"))
        if value is not None:
            found[REASONING_TOKENS] = value
    return found


def reported_usage(messages: list[Any], llm_output: Mapping[str, Any] | None) -> dict[str, int]:
    """Usage of one model call: the first source that reports tokens, filled from the rest."""
    if len(messages) == 1:
        usage = getattr(messages[0], "usage_metadata", None)
        if type(usage) is dict:
            fast = _from_usage_metadata(usage)
            if fast is not None:
                return fast
    found: dict[str, int] = {}
    for source in _usage_sources(messages, llm_output):
        for attribute, value in usage_attributes(source).items():
            found.setdefault(attribute, value)
        if INPUT_TOKENS in found and OUTPUT_TOKENS in found:
            break
    return found

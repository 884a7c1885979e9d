"""OpenTelemetry GenAI attributes of model and tool runs.

Each extractor reads one concern from what LangChain passes to a callback into the attributes;
:func:`collect` runs them with fault isolation, so one odd model response costs its own
attributes, never the span. They are plain functions over plain loops: they run on every model
call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from runspan.attributes import (
    FINISH_REASONS,
    OPERATION,
    PROVIDER,
    REQUEST_FREQUENCY_PENALTY,
    REQUEST_MAX_TOKENS,
    REQUEST_MODEL,
    REQUEST_PRESENCE_PENALTY,
    REQUEST_SEED,
    REQUEST_STOP_SEQUENCES,
    REQUEST_TEMPERATURE,
    REQUEST_TOP_K,
    REQUEST_TOP_P,
    RESPONSE_ID,
    RESPONSE_MODEL,
    TOOL_CALL_ID,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    TOOL_TYPE,
)
from runspan.tracer.guard import failures
from runspan.tracer.usage import reported_usage

CHAT = "chat"
TEXT_COMPLETION = "text_completion"
EXECUTE_TOOL = "execute_tool"
RETRIEVAL = "retrieval"

Attributes = dict[str, AttributeValue]
# An extractor reads one concern from a callback's arguments into the attributes.
Extractor = Callable[[Attributes, Any, Any], None]

# LangChain's ls_provider names mapped to the GenAI convention's well-known provider names;
# others pass through as LangChain gives them.
_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "google_vertexai": "gcp.vertex_ai",
    "google_genai": "gcp.gen_ai",
    "google_ai": "gcp.gemini",
    "groq": "groq",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
    "ibm": "ibm.watsonx.ai",
}

# Request parameters: invocation parameter names, and the metadata keys LangChain sets, by the
# attribute they fill. Metadata wins: LangChain has already normalized it.
_PARAMETER_ATTRIBUTES = {
    "temperature": REQUEST_TEMPERATURE,
    "max_tokens": REQUEST_MAX_TOKENS,
    "max_completion_tokens": REQUEST_MAX_TOKENS,
    "max_output_tokens": REQUEST_MAX_TOKENS,
    "num_predict": REQUEST_MAX_TOKENS,
    "top_p": REQUEST_TOP_P,
    "top_k": REQUEST_TOP_K,
    "frequency_penalty": REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": REQUEST_PRESENCE_PENALTY,
    "seed": REQUEST_SEED,
}
_METADATA_ATTRIBUTES = {
    "ls_temperature": REQUEST_TEMPERATURE,
    "ls_max_tokens": REQUEST_MAX_TOKENS,
}


def collect(extractors: Iterable[Extractor], first: Any, second: Any) -> Attributes:
    """Run each extractor; one that fails is logged and skipped, the others still count."""
    attributes: Attributes = {}
    for extractor in extractors:
        try:
            extractor(attributes, first, second)
        except Exception:
            failures.exception(extractor.__name__, f"runspan: {extractor.__name__} failed")
    return attributes


def model_name(metadata: Mapping[str, Any] | None, params: Mapping[str, Any] | None) -> str | None:
    """The requested model, as LangChain reports it in metadata or invocation parameters."""
    if metadata:
        name = metadata.get("ls_model_name")
        if isinstance(name, str) and name:
            return name
    if params:
        for key in ("model", "model_name", "model_id", "deployment_name"):
            name = params.get(key)
            if isinstance(name, str) and name:
                return name
    return None


# --- at the start of a model run: (attributes, metadata, invocation parameters) ----------


def _requested_model(
    attributes: Attributes, meta: Mapping[str, Any], params: Mapping[str, Any]
) -> None:
    name = model_name(meta, params)
    if name:
        attributes[REQUEST_MODEL] = name


def _provider(attributes: Attributes, meta: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    raw = meta.get("ls_provider")
    if isinstance(raw, str) and raw:
        attributes[PROVIDER] = _PROVIDERS.get(raw.lower(), raw.lower())


def _parameters(attributes: Attributes, meta: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    # Walk what the call has, not every parameter there could be: this runs per model call.
    for source, names in ((params, _PARAMETER_ATTRIBUTES), (meta, _METADATA_ATTRIBUTES)):
        for key, value in source.items():
            attribute = names.get(key)
            if attribute is not None and (type(value) is int or type(value) is float):
                attributes[attribute] = value


def _stop_sequences(
    attributes: Attributes, meta: Mapping[str, Any], params: Mapping[str, Any]
) -> None:
    stop = meta.get("ls_stop") or params.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, (list, tuple)) and stop and all(isinstance(s, str) for s in stop):
        attributes[REQUEST_STOP_SEQUENCES] = tuple(stop)


_REQUEST_EXTRACTORS: tuple[Extractor, ...] = (
    _requested_model,
    _provider,
    _parameters,
    _stop_sequences,
)


def request_attributes(
    operation: str,
    metadata: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
) -> Attributes:
    """Operation, provider, model and request parameters of a model run at its start."""
    attributes = collect(_REQUEST_EXTRACTORS, metadata or {}, params or {})
    attributes[OPERATION] = operation
    return attributes


# --- at the end of a model run: (attributes, generations, llm_output) --------------------


def _response_metadata(
    generations: list[Any], output: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    sources: list[Mapping[str, Any]] = []
    for generation in generations:
        metadata = getattr(getattr(generation, "message", None), "response_metadata", None)
        if isinstance(metadata, Mapping):
            sources.append(metadata)
    sources.append(output)
    return sources


def _response_model_and_id(
    attributes: Attributes, generations: list[Any], output: Mapping[str, Any]
) -> None:
    for source in _response_metadata(generations, output):
        if RESPONSE_MODEL not in attributes:
            name = source.get("model_name") or source.get("model")
            if isinstance(name, str) and name:
                attributes[RESPONSE_MODEL] = name
        if RESPONSE_ID not in attributes:
            value = source.get("id")
            if isinstance(value, str) and value:
                attributes[RESPONSE_ID] = value
    if RESPONSE_ID not in attributes:
        # Streams carry the provider's id on the message itself; LangChain's own ids for
        # messages that have none start with "lc_".
        for generation in generations:
            value = getattr(getattr(generation, "message", None), "id", None)
            if isinstance(value, str) and value and not value.startswith("lc_"):
                attributes[RESPONSE_ID] = value
                break


def _finish_reasons(
    attributes: Attributes, generations: list[Any], output: Mapping[str, Any]
) -> None:
    reasons: list[str] = []
    for generation in generations:
        info = generation.generation_info or {}
        message = getattr(generation, "message", None)
        metadata = getattr(message, "response_metadata", None) or {}
        for source in (info, metadata):
            reason = source.get("finish_reason") or source.get("stop_reason")
            if isinstance(reason, str) and reason:
                reasons.append(reason)
                break
    if reasons:
        attributes[FINISH_REASONS] = tuple(reasons)


def _usage(attributes: Attributes, generations: list[Any], output: Mapping[str, Any]) -> None:
    messages = [g.message for g in generations if getattr(g, "message", None) is not None]
    attributes.update(reported_usage(messages, output))


_RESPONSE_EXTRACTORS: tuple[Extractor, ...] = (_response_model_and_id, _finish_reasons, _usage)


def response_attributes(generations: list[Any], llm_output: Mapping[str, Any] | None) -> Attributes:
    """Model, id, finish reasons and token usage of a finished model run."""
    output = llm_output if isinstance(llm_output, Mapping) else {}
    return collect(_RESPONSE_EXTRACTORS, generations, output)


def tool_attributes(
    name: str, serialized: Mapping[str, Any] | None, tool_call_id: object
) -> Attributes:
    """The GenAI attributes of a tool run."""
    attributes: Attributes = {
        OPERATION: EXECUTE_TOOL,
        TOOL_NAME: name,
        TOOL_TYPE: "function",
    }
    description = (serialized or {}).get("description")
    if isinstance(description, str) and description:
        attributes[TOOL_DESCRIPTION] = description
    if isinstance(tool_call_id, str) and tool_call_id:
        attributes[TOOL_CALL_ID] = tool_call_id
    return attributes

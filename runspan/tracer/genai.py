"""OpenTelemetry GenAI attributes of model and tool runs.

Each extractor reads one concern from what LangChain passes to a callback and yields
``(attribute, value)`` pairs; :func:`collect` runs them with fault isolation, so one odd model
response costs its own attributes, never the span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from runspan.tracer.guard import failures
from runspan.tracer.usage import reported_usage

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_DESCRIPTION = "gen_ai.tool.description"
TOOL_TYPE = "gen_ai.tool.type"

CHAT = "chat"
TEXT_COMPLETION = "text_completion"
EXECUTE_TOOL = "execute_tool"

Pairs = Iterator[tuple[str, AttributeValue]]

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

# Request parameters: (attribute, metadata key LangChain sets, invocation parameter names).
_REQUEST_PARAMETERS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("gen_ai.request.temperature", "ls_temperature", ("temperature",)),
    ("gen_ai.request.max_tokens", "ls_max_tokens",
     ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")),
    ("gen_ai.request.top_p", None, ("top_p",)),
    ("gen_ai.request.top_k", None, ("top_k",)),
    ("gen_ai.request.frequency_penalty", None, ("frequency_penalty",)),
    ("gen_ai.request.presence_penalty", None, ("presence_penalty",)),
    ("gen_ai.request.seed", None, ("seed",)),
)


def collect(extractors: Iterable[Callable[[], Pairs]]) -> dict[str, AttributeValue]:
    """Run each extractor; one that fails is logged and skipped, keeping what it yielded."""
    attributes: dict[str, AttributeValue] = {}
    for extractor in extractors:
        try:
            for key, value in extractor():
                attributes[key] = value
        except Exception:
            failures.exception(extractor.__name__, f"runspan: {extractor.__name__} failed")
    return attributes


def _number(value: object) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


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


def request_attributes(
    operation: str,
    metadata: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
) -> dict[str, AttributeValue]:
    """Operation, provider, model and request parameters of a model run at its start."""
    meta: Mapping[str, Any] = metadata or {}
    invocation: Mapping[str, Any] = params or {}

    def operation_and_model() -> Pairs:
        yield OPERATION, operation
        name = model_name(meta, invocation)
        if name:
            yield REQUEST_MODEL, name

    def provider() -> Pairs:
        raw = meta.get("ls_provider")
        if isinstance(raw, str) and raw:
            yield PROVIDER, _PROVIDERS.get(raw.lower(), raw.lower())

    def parameters() -> Pairs:
        for attribute, meta_key, param_keys in _REQUEST_PARAMETERS:
            value = _number(meta.get(meta_key)) if meta_key else None
            for key in param_keys:
                if value is not None:
                    break
                value = _number(invocation.get(key))
            if value is not None:
                yield attribute, value

    def stop_sequences() -> Pairs:
        stop = meta.get("ls_stop") or invocation.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        if isinstance(stop, (list, tuple)) and stop and all(isinstance(s, str) for s in stop):
            yield "gen_ai.request.stop_sequences", list(stop)

    return collect((operation_and_model, provider, parameters, stop_sequences))


def response_attributes(generations: list[Any], llm_output: Mapping[str, Any] | None) -> dict[
    str, AttributeValue
]:
    """Model, id, finish reasons and token usage of a finished model run."""
    messages = [g.message for g in generations if getattr(g, "message", None) is not None]
    output: Mapping[str, Any] = llm_output if isinstance(llm_output, Mapping) else {}

    def _metadata() -> Iterator[Mapping[str, Any]]:
        for message in messages:
            metadata = getattr(message, "response_metadata", None)
            if isinstance(metadata, Mapping):
                yield metadata
        yield output

    def response_model() -> Pairs:
        for source in _metadata():
            for key in ("model_name", "model"):
                name = source.get(key)
                if isinstance(name, str) and name:
                    yield RESPONSE_MODEL, name
                    return

    def response_id() -> Pairs:
        for source in _metadata():
            value = source.get("id")
            if isinstance(value, str) and value:
                yield RESPONSE_ID, value
                return

    def finish_reasons() -> Pairs:
        reasons: list[str] = []
        for generation in generations:
            info = getattr(generation, "generation_info", None) or {}
            message = getattr(generation, "message", None)
            metadata = getattr(message, "response_metadata", None) or {}
            for source in (info, metadata):
                reason = source.get("finish_reason") or source.get("stop_reason")
                if isinstance(reason, str) and reason:
                    reasons.append(reason)
                    break
        if reasons:
            yield FINISH_REASONS, reasons

    def usage() -> Pairs:
        yield from reported_usage(messages, output).items()

    return collect((response_model, response_id, finish_reasons, usage))


def tool_attributes(
    name: str, serialized: Mapping[str, Any] | None, tool_call_id: object
) -> dict[str, AttributeValue]:
    """The GenAI attributes of a tool run."""
    attributes: dict[str, AttributeValue] = {
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

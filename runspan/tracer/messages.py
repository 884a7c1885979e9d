"""LangChain's messages in the shape of OpenTelemetry's GenAI content attributes.

The conventions' JSON schemas (``gen-ai-input-messages.json``, ``gen-ai-output-messages.json``,
``gen-ai-system-instructions.json``, ``gen-ai-tool-definitions.json``) describe a message as
``{role, parts}``: typed parts (``text``, ``tool_call``, ``tool_call_response``, ``reasoning``,
``uri``, ``file``, and generic parts of any other type) instead of one provider's content format.
Jaeger's GenAI tab, Phoenix and Grafana read these names.

Every provider's LangChain shapes map onto them: plain strings, OpenAI's ``image_url`` and
``input_audio`` blocks, Anthropic's ``image``/``tool_use``/``tool_result``/``thinking`` blocks,
Gemini's ``media`` blocks, LangChain's standard ``image``/``audio``/``file``/``reasoning`` blocks.
Inline bytes (base64, data URLs) never leave the process: such a part keeps its type, mime type
and size. The functions build plain lists and dicts; :mod:`runspan.tracer.content` redacts,
caps and serializes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

Part = dict[str, Any]
Message = dict[str, Any]

# LangChain's message types by the conventions' roles.
_ROLES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
}

# Providers' finish reasons by the conventions' values; others pass through lower-cased.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "complete": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_length": "length",
    "tool_calls": "tool_call",
    "tool_use": "tool_call",
    "function_call": "tool_call",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "recitation": "content_filter",
    "refusal": "content_filter",
}

# Keys that carry inline bytes in some provider's block; their values are never copied.
_BYTES_KEYS = ("data", "base64", "bytes")
_MODALITIES = ("image", "audio", "video", "document")


def role_of(message: BaseMessage) -> str:
    kind = message.type
    if kind.endswith("MessageChunk"):  # a streamed message: AIMessageChunk is an "ai" message
        kind = kind.removesuffix("MessageChunk").lower()
    if kind == "chat":  # a ChatMessage carries its own role
        kind = str(getattr(message, "role", "user"))
    return _ROLES.get(kind, kind)


def _size_note(data: object) -> str:
    size = len(data) if isinstance(data, (str, bytes, bytearray)) else 0
    return f"{size} base64 chars" if isinstance(data, str) else f"{size} bytes"


def _inline(modality: str, mime_type: object, data: object) -> Part:
    """A part whose bytes stay out: the conventions' blob part needs them, so a generic one."""
    part: Part = {"type": modality, "modality": modality, "content_omitted": _size_note(data)}
    if isinstance(mime_type, str) and mime_type:
        part["mime_type"] = mime_type
    return part


def _from_url(modality: str, url: str, mime_type: object = None) -> Part:
    if url.startswith("data:"):  # data:image/png;base64,....
        header, _, payload = url.partition(",")
        declared = header.removeprefix("data:").split(";")[0]
        return _inline(modality, declared or mime_type, payload)
    part: Part = {"type": "uri", "modality": modality, "uri": url}
    if isinstance(mime_type, str) and mime_type:
        part["mime_type"] = mime_type
    return part


def _modality(kind: str, mime_type: object) -> str:
    if kind in _MODALITIES:
        return kind
    if isinstance(mime_type, str) and "/" in mime_type:
        major = mime_type.split("/")[0]
        if major in _MODALITIES:
            return major
    return "document" if kind == "file" else kind


def _media(block: Mapping[str, Any], kind: str) -> Part:
    """An image, audio, video or file block of any provider's shape."""
    mime_type = block.get("mime_type") or block.get("media_type")
    source = block.get("source")
    if isinstance(source, Mapping):  # Anthropic: {"source": {"type": "base64"|"url", ...}}
        mime_type = mime_type or source.get("media_type")
        if isinstance(source.get("url"), str):
            return _from_url(_modality(kind, mime_type), source["url"], mime_type)
        return _inline(_modality(kind, mime_type), mime_type, source.get("data"))
    modality = _modality(kind, mime_type)
    for key in ("url", "file_uri", "uri"):
        if isinstance(block.get(key), str):
            return _from_url(modality, block[key], mime_type)
    file_id = block.get("file_id") or (
        block.get("id") if block.get("source_type") == "id" else None
    )
    if isinstance(file_id, str):
        part: Part = {"type": "file", "modality": modality, "file_id": file_id}
        if isinstance(mime_type, str):
            part["mime_type"] = mime_type
        return part
    data = next((block[key] for key in _BYTES_KEYS if key in block), None)
    return _inline(modality, mime_type, data)


def _without_bytes(block: Mapping[str, Any]) -> Part:
    """An unknown block kept as a generic part, minus any inline bytes it holds."""
    part: Part = {str(key): value for key, value in block.items() if key not in _BYTES_KEYS}
    for key in _BYTES_KEYS:
        if key in block:
            part["content_omitted"] = _size_note(block[key])
    if not isinstance(part.get("type"), str):
        part["type"] = str(part.get("type", "unknown"))
    return part


def _block(block: Any) -> Part | None:
    """One content block as a part; None for a block the message's own fields already give."""
    if isinstance(block, str):
        return {"type": "text", "content": block}
    if not isinstance(block, Mapping):
        return {"type": "text", "content": str(block)}
    kind = block.get("type")
    if kind == "text" or (kind is None and isinstance(block.get("text"), str)):
        return {"type": "text", "content": str(block.get("text", ""))}
    if kind in ("reasoning", "thinking"):
        text = block.get("reasoning", block.get("thinking", ""))
        return {"type": "reasoning", "content": text if isinstance(text, str) else str(text)}
    if kind in ("tool_use", "tool_call", "function_call", "tool_call_chunk"):
        return None  # the message's tool_calls carry these, parsed
    if kind == "tool_result":  # Anthropic: a tool's result inside a user message
        return {
            "type": "tool_call_response",
            "id": block.get("tool_use_id"),
            "response": block.get("content"),
        }
    if kind == "image_url":  # OpenAI
        image = block.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        return _from_url("image", url) if isinstance(url, str) else _without_bytes(block)
    if kind == "input_audio":  # OpenAI
        audio = block.get("input_audio")
        audio = audio if isinstance(audio, Mapping) else {}
        fmt = audio.get("format")
        return _inline("audio", f"audio/{fmt}" if isinstance(fmt, str) else None, audio.get("data"))
    if kind in ("image", "audio", "video", "file", "document", "media"):
        return _media(block, str(kind))
    return _without_bytes(block)


def content_parts(content: Any) -> list[Part]:
    """A message's content (a string, or a list of provider blocks) as parts."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    if isinstance(content, list):
        return [part for part in map(_block, content) if part is not None]
    if content is None:
        return []
    return [{"type": "text", "content": str(content)}]


def _tool_calls(message: AIMessage) -> list[Part]:
    parts: list[Part] = [
        {"type": "tool_call", "id": call.get("id"), "name": call["name"], "arguments": call["args"]}
        for call in message.tool_calls
    ]
    # A call the provider sent but LangChain could not parse: its raw arguments, as sent.
    parts += [
        {
            "type": "tool_call",
            "id": call.get("id"),
            "name": call.get("name") or "",
            "arguments": call.get("args"),
        }
        for call in message.invalid_tool_calls
    ]
    return parts


def message(value: Any) -> Message:
    """One LangChain message (or a plain string or dict prompt) as a conventions' message."""
    if isinstance(value, BaseMessage):
        role = role_of(value)
        if isinstance(value, ToolMessage):
            parts: list[Part] = [
                {"type": "tool_call_response", "id": value.tool_call_id, "response": value.content}
            ]
        else:
            parts = content_parts(value.content)
            if isinstance(value, AIMessage):
                parts += _tool_calls(value)
        result: Message = {"role": role, "parts": parts}
        if value.name:
            result["name"] = value.name
        return result
    if isinstance(value, Mapping) and "role" in value:  # an OpenAI-style dict message
        role = str(value.get("role"))
        return {"role": _ROLES.get(role, role), "parts": content_parts(value.get("content"))}
    return {"role": "user", "parts": content_parts(value if isinstance(value, str) else str(value))}


def split_system(messages: Sequence[Any]) -> tuple[list[Part], list[Message]]:
    """The system instructions (the parts of the leading system messages) and the rest.

    A system message later in the history stays in place, as a message: moving it would
    change what the model was told when.
    """
    instructions: list[Part] = []
    rest: list[Message] = []
    for item in messages:
        converted = message(item)
        if not rest and converted["role"] == "system":
            instructions += converted["parts"]
        else:
            rest.append(converted)
    return instructions, rest


def finish_reason(reported: object, has_tool_calls: bool) -> str:
    """The conventions' finish reason; when the provider reports none, what the message shows
    (a tool call, or a stop: the generation completed)."""
    if isinstance(reported, str) and reported:
        return _FINISH_REASONS.get(reported.lower(), reported.lower())
    return "tool_call" if has_tool_calls else "stop"


def _reported_reason(generation: Any) -> object:
    info = getattr(generation, "generation_info", None) or {}
    metadata = getattr(getattr(generation, "message", None), "response_metadata", None) or {}
    for source in (info, metadata):
        if isinstance(source, Mapping):
            reason = source.get("finish_reason") or source.get("stop_reason")
            if reason:
                return reason
    return None


def produced_before_error(response: Any) -> list[Any]:
    """What a failed stream produced: LangChain reports its merged chunks with the error."""
    generations = getattr(response, "generations", None)
    if not generations:
        return []
    produced = []
    for generation in generations[0]:
        message = getattr(generation, "message", None)
        if isinstance(message, BaseMessage):
            if message.content or getattr(message, "tool_calls", None):
                produced.append(generation)
        elif getattr(generation, "text", None):
            produced.append(generation)
    return produced


def output_messages(generations: Sequence[Any], *, failed: bool = False) -> list[Message]:
    """A model run's generations (chat or text) as output messages, each with its finish
    reason; ``failed`` for what a stream produced before its error."""
    messages: list[Message] = []
    for generation in generations:
        produced = getattr(generation, "message", None)
        if isinstance(produced, BaseMessage):
            converted = message(produced)
            converted["role"] = "assistant" if converted["role"] == "ai" else converted["role"]
        else:
            converted = {
                "role": "assistant",
                "parts": content_parts(getattr(generation, "text", "")),
            }
        has_calls = any(part["type"] == "tool_call" for part in converted["parts"])
        reported = "error" if failed else _reported_reason(generation)
        converted["finish_reason"] = finish_reason(reported, has_calls)
        messages.append(converted)
    return messages


def tool_definitions(tools: Any) -> list[dict[str, Any]]:
    """The tools offered to a model (OpenAI's, Anthropic's or Gemini's format) as the
    conventions' function tool definitions."""
    definitions: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, (list, tuple)) else ():
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function")
        declared: Mapping[str, Any] = function if isinstance(function, Mapping) else tool
        for function in declared.get("function_declarations") or [declared]:  # Gemini groups
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                # A provider's built-in tool (web search, code execution): kept as it is.
                definitions.append(
                    {
                        **tool,
                        "type": str(tool.get("type", "custom")),
                        "name": str(tool.get("name", tool.get("type", ""))),
                    }
                )
                break
            definition: dict[str, Any] = {"type": "function", "name": function["name"]}
            if isinstance(function.get("description"), str):
                definition["description"] = function["description"]
            parameters = function.get("parameters", function.get("input_schema"))
            if isinstance(parameters, Mapping):
                definition["parameters"] = parameters
            definitions.append(definition)
    return definitions


def retrieved_documents(documents: Sequence[Any]) -> list[dict[str, Any]]:
    """Retrieved documents as the conventions' entries: the id and score where the retriever
    gives them (``Document.id``, or ``id``/``score``/``relevance_score`` in its metadata),
    the text as ``content`` (as Jaeger shows it), and the rest of the metadata."""
    entries: list[dict[str, Any]] = []
    for document in documents:
        metadata = getattr(document, "metadata", None)
        metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
        entry: dict[str, Any] = {}
        ident = getattr(document, "id", None) or metadata.pop("id", None)
        if ident is not None:
            entry["id"] = str(ident)
        for key in ("score", "relevance_score", "_score", "similarity"):
            score = metadata.get(key)
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                entry["score"] = metadata.pop(key)
                break
        entry["content"] = getattr(document, "page_content", str(document))
        if metadata:
            entry["metadata"] = metadata
        entries.append(entry)
    return entries

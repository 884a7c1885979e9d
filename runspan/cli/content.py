"""What a run said, as lines under it in ``runspan show``: the conversation of a model call (role,
content, tool calls with their arguments, tool results), the tools offered to the model, a
tool's arguments and result, any other run's input and output, and an error's stack trace.

Long values are folded with a marker saying how much was left out; ``--full`` shows all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text

from runspan.attributes import (
    EXCEPTION_EVENT,
    EXCEPTION_STACKTRACE,
    SYSTEM_INSTRUCTIONS,
    TOOL_DEFINITIONS,
)
from runspan.storage import Run

_FOLD_CHARS = 300
_FOLD_LINES = 4
_ONE_LINE = 90  # a chain's input and output: one line each, the model runs tell the story
_ROLE_STYLES = {
    "system": "magenta",
    "human": "cyan",
    "user": "cyan",
    "ai": "green",
    "assistant": "green",
    "tool": "yellow",
}


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def folded(text: str, full: bool) -> str:
    """``text``, cut to a few lines with a marker of what was left out, unless ``full``."""
    if full:
        return text
    lines = text.splitlines() or [""]
    kept = "\n".join(lines[:_FOLD_LINES])[:_FOLD_CHARS]
    left = len(text) - len(kept)
    return kept if left <= 0 else f"{kept} … [{left:,} more chars: --full]"


def _block_text(block: Any) -> str:
    if isinstance(block, Mapping):
        kind = block.get("type")
        if kind == "text" or "text" in block:
            return str(block.get("text", ""))
        return f"[{kind or 'part'}]"  # an image or other part: named, never its bytes
    return _compact(block)


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(_block_text(block) for block in content)
    return _compact(content) if content is not None else ""


def _tool_call_text(call: Any) -> str:
    if not isinstance(call, Mapping):
        return _compact(call)
    arguments = call.get("args", call.get("arguments", {}))
    shown = (
        ", ".join(f"{k}={_compact(v)}" for k, v in arguments.items())
        if isinstance(arguments, Mapping)
        else _compact(arguments)
    )
    ident = f" [{call['id']}]" if call.get("id") else ""
    return f"→ {call.get('name', '?')}({shown}){ident}"


def _messages(value: Any) -> list[Mapping[str, Any]] | None:
    """``value`` as chat messages, if that is what it holds."""
    if isinstance(value, Mapping) and "role" in value:
        return [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(m, Mapping) and "role" in m for m in value)
    ):
        return list(value)
    return None


def _part_text(part: Any) -> str:
    """A GenAI message part as text: an attachment is named, never shown as bytes."""
    if not isinstance(part, Mapping):
        return _compact(part)
    kind = part.get("type")
    if kind == "text":
        return str(part.get("content", ""))
    if kind == "reasoning":
        return f"(thinking) {part.get('content', '')}"
    if kind == "tool_call_response":
        ident = f"[{part['id']}] " if part.get("id") else ""
        return f"{ident}{_compact(part.get('response'))}"
    if kind == "uri":
        return f"[{part.get('modality', 'file')}: {part.get('uri', '')}]"
    return f"[{part.get('modality') or kind or 'part'}]"


def _parts_lines(message: Mapping[str, Any], role: str, full: bool) -> list[Text]:
    """A message in the GenAI conventions' shape: its parts, tool calls on lines of their own."""
    calls = [p for p in message["parts"] if isinstance(p, Mapping) and p.get("type") == "tool_call"]
    said = [_part_text(p) for p in message["parts"] if p not in calls]
    line = Text(f"{role}: ", style=_ROLE_STYLES.get(role, "bold"))
    line.append(folded(" ".join(said), full))
    lines = [line] if said or not calls else []
    for call in calls:
        shown = {"name": call.get("name"), "args": call.get("arguments"), "id": call.get("id")}
        prefix = f"{role}: " if not lines else "  "
        lines.append(Text(f"{prefix}{_tool_call_text(shown)}", style="yellow"))
    return lines


def _conversation(messages: Iterable[Mapping[str, Any]], full: bool) -> list[Text]:
    lines: list[Text] = []
    for message in messages:
        role = str(message.get("role", "?"))
        if isinstance(message.get("parts"), list):
            lines += _parts_lines(message, role, full)
            continue
        # Stored before runspan wrote the GenAI messages: LangChain's own fields.
        line = Text(f"{role}: ", style=_ROLE_STYLES.get(role, "bold"))
        if message.get("tool_call_id"):
            line.append(f"[{message['tool_call_id']}] ", style="dim")
        line.append(folded(_content_text(message.get("content")), full))
        lines.append(line)
        for call in message.get("tool_calls") or ():
            lines.append(Text(f"  {_tool_call_text(call)}", style="yellow"))
    return lines


def _system_instructions(run: Run, full: bool) -> list[Text]:
    raw = run.attributes.get(SYSTEM_INSTRUCTIONS) if isinstance(run.attributes, Mapping) else None
    if not isinstance(raw, str):
        return []
    try:
        parts = json.loads(raw)
    except ValueError:
        parts = [raw]
    return _conversation(
        [{"role": "system", "parts": parts if isinstance(parts, list) else []}], full
    )


def _offered_tools(run: Run) -> Text | None:
    raw = (
        (run.attributes or {}).get(TOOL_DEFINITIONS)
        if isinstance(run.attributes, Mapping)
        else None
    )
    if not isinstance(raw, str):
        return None
    try:
        tools = json.loads(raw)
    except ValueError:
        return Text(f"tools offered: {folded(raw, False)}", style="dim")
    names = []
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function", tool) if isinstance(tool, Mapping) else {}
        names.append(str(function.get("name", "?")) if isinstance(function, Mapping) else "?")
    return Text(f"tools offered: {', '.join(names)}", style="dim")


def _labelled(label: str, value: Any, full: bool, *, one_line: bool = False) -> Text:
    line = Text(f"{label} ", style="dim")
    text = _compact(value)
    if one_line and not full:
        flat = " ".join(text.split())
        text = flat if len(flat) <= _ONE_LINE else f"{flat[:_ONE_LINE]} … [--full]"
    line.append(folded(text, full))
    return line


def _stack_trace(run: Run) -> str | None:
    for event in run.events if isinstance(run.events, list) else []:
        if isinstance(event, Mapping) and event.get("name") == EXCEPTION_EVENT:
            trace = (event.get("attributes") or {}).get(EXCEPTION_STACKTRACE)
            if isinstance(trace, str) and trace:
                return trace
    return None


def run_details(run: Run, *, full: bool = False) -> list[Text]:
    """The lines shown under ``run``."""
    lines: list[Text] = []
    if run.run_type == "llm":
        prompt = run.inputs
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], list):
            prompt = prompt[0]
        asked = _messages(prompt)
        lines += _system_instructions(run, full)
        lines += _conversation(asked, full) if asked else [_labelled("prompt", prompt, full)]
        offered = _offered_tools(run)
        if offered is not None:
            lines.append(offered)
        answered = _messages(run.outputs)
        if answered:
            lines += _conversation(answered, full)
        elif run.outputs is not None:
            lines.append(_labelled("output", run.outputs, full))
    elif run.run_type == "tool":
        result = run.outputs
        if isinstance(result, Mapping) and "content" in result:  # a ToolMessage
            result = result["content"]
        lines.append(_labelled("args", run.inputs, full))
        if result is not None:
            lines.append(_labelled("result", result, full))
    elif run.run_type != "prompt":  # a prompt's messages are shown by the model it feeds
        for label, value in (("in", run.inputs), ("out", run.outputs)):
            if value is not None:
                lines.append(_labelled(label, value, full, one_line=True))
    if run.status == "error" and run.error_message:
        message = Text("error ", style="dim")
        message.append(folded(run.error_message, full), style="red")
        lines.append(message)
    if run.status == "error" and full:
        trace = _stack_trace(run)
        if trace:
            lines.append(Text(trace.rstrip(), style="red"))
    return lines

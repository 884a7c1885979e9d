"""Any Python object to JSON text, without raising.

The fast path is ``json.dumps`` with a ``default`` that turns LangChain and library objects into
plain data; the C encoder does the walking. Only when that fails (a cycle, extreme nesting) does a
careful Python walk take over, marking cycles and cutting depth instead of failing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.prompt_values import PromptValue
from pydantic import BaseModel

_MAX_DEPTH = 64


def _message(message: BaseMessage) -> dict[str, Any]:
    # The fields a person reads in a trace, not LangChain's whole serialization (which costs
    # tens of microseconds per message).
    data: dict[str, Any] = {"role": message.type, "content": message.content}
    if message.name:
        data["name"] = message.name
    # isinstance first: a missing attribute on a pydantic model is a slow AttributeError.
    if isinstance(message, AIMessage) and message.tool_calls:
        data["tool_calls"] = message.tool_calls
    elif isinstance(message, ToolMessage):
        data["tool_call_id"] = message.tool_call_id
    return data


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"


def plain(value: Any) -> Any:
    """One step from ``value`` towards JSON: a str, number, list or dict, never an error."""
    try:
        return _plain(value)
    except Exception:
        return _safe_repr(value)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseMessage):
        return _message(value)
    if isinstance(value, Document):
        return {"page_content": value.page_content, "metadata": value.metadata}
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, BaseModel):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        items = list(value)
        with contextlib.suppress(TypeError):  # mixed types keep their set order
            items.sort()
        return items
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (uuid.UUID, Decimal, PurePath)):
        return str(value)
    if isinstance(value, BaseException):
        return f"{type(value).__qualname__}: {value}"
    return _safe_repr(value)


def _walk(value: Any, ancestors: set[int], depth: int) -> Any:
    """The careful path: follows containers by hand, marks cycles, cuts at a depth."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if depth >= _MAX_DEPTH:
        return "[runspan: nested too deep]"
    marker = id(value)
    if marker in ancestors:
        return "[runspan: cycle]"
    ancestors.add(marker)
    try:
        if isinstance(value, (list, tuple)):
            return [_walk(item, ancestors, depth + 1) for item in value]
        if isinstance(value, dict):
            return {str(key): _walk(item, ancestors, depth + 1) for key, item in value.items()}
        return _walk(plain(value), ancestors, depth + 1)
    finally:
        ancestors.discard(marker)


# Built once: json.dumps with non-default options builds a new encoder on every call.
_FAST = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=plain)
_CAREFUL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_safe_repr)


def to_json(value: Any) -> str:
    """``value`` as compact JSON text; any object serializes, nothing raises."""
    try:
        return _FAST.encode(value)
    except (ValueError, RecursionError, TypeError):
        pass
    try:
        return _CAREFUL.encode(_walk(value, set(), 0))
    except Exception:
        return _CAREFUL.encode(_safe_repr(value))

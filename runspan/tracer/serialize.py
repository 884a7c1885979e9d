"""Any Python object to JSON text, without raising.

The fast path is a compiled encoder with a ``default`` that turns LangChain and library objects
into plain data: ``orjson`` where it is installed (LangSmith, which langchain-core requires,
brings it on CPython), and what it refuses the standard library's C encoder, which writes the
same text. Only when that fails too (a cycle, extreme nesting) does a careful Python walk take
over, marking cycles and cutting depth instead of failing. NaN and the infinities, which JSON
has no word for, are written as ``null`` on every path, as JavaScript's ``JSON.stringify``
writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import json
import math
import threading
import uuid
from collections.abc import Callable, Mapping
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
    role = message.type
    if role.endswith("MessageChunk"):  # a streamed message: AIMessageChunk is an "ai" message
        role = role.removesuffix("MessageChunk").lower()
    data: dict[str, Any] = {"role": role, "content": message.content}
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
    kind = type(value)
    convert = _converters.get(kind)
    if convert is None:
        convert = _converter_for(value)
        if len(_converters) < _MAX_CACHED_TYPES:
            _converters[kind] = convert
    try:
        return convert(value)
    except Exception:
        return _safe_repr(value)


def _document(value: Document) -> dict[str, Any]:
    return {"page_content": value.page_content, "metadata": value.metadata}


def _prompt_value(value: PromptValue) -> list[BaseMessage]:
    # Through the instance: PromptValue.to_messages itself is the abstract method.
    return value.to_messages()


def _dataclass(value: Any) -> dict[str, Any]:
    return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}


def _mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): item for key, item in value.items()}


def _set(value: set[Any] | frozenset[Any]) -> list[Any]:
    items = list(value)
    with contextlib.suppress(TypeError):  # mixed types keep their set order
        items.sort()
    return items


def _converter_for(value: Any) -> Callable[[Any], Any]:
    """How to make values of ``value``'s type plain; decided once per type."""
    if isinstance(value, BaseMessage):
        return _message
    if isinstance(value, Document):
        return _document
    if isinstance(value, PromptValue):
        return _prompt_value
    if isinstance(value, BaseModel):
        return BaseModel.model_dump
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass
    if isinstance(value, Mapping):
        return _mapping
    if isinstance(value, (set, frozenset)):
        return _set
    # Subclasses that the standard library's encoder writes as their base type and orjson
    # hands over (named tuples are the common case).
    if isinstance(value, tuple):
        return list
    if isinstance(value, float):
        return float
    if isinstance(value, (bytes, bytearray, memoryview)):
        return lambda v: f"<{len(v)} bytes>"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return lambda v: v.isoformat()
    if isinstance(value, enum.Enum):
        return lambda v: v.value
    if isinstance(value, (uuid.UUID, Decimal, PurePath)):
        return str
    if isinstance(value, BaseException):
        return lambda v: f"{type(v).__qualname__}: {v}"
    return _safe_repr


# Type to converter, filled as types are met; a plain dict read is atomic, so threads share it
# without a lock. Bounded, since a program may create classes on the fly.
_MAX_CACHED_TYPES = 1024
_converters: dict[type, Callable[[Any], Any]] = {}


def _walk(value: Any, ancestors: set[int], depth: int) -> Any:
    """The careful path: follows containers by hand, marks cycles, cuts at a depth."""
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        # NaN and the infinities are not JSON: databases and OTLP receivers reject them.
        return value if math.isfinite(value) else None
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


class _Encoders(threading.local):
    """One compact JSON encoder per thread, built once.

    ``json.dumps`` with options builds a ``JSONEncoder`` and then a C encoder on every call,
    which costs more than encoding a small input. The C encoder is built here once per thread:
    it keeps a table of the containers it is inside (to detect cycles), which must not be
    shared by two threads encoding the same object.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.encode = _build_encoder(plain)


def _build_encoder(default: Callable[[Any], Any]) -> Callable[[Any], str]:
    encoder = json.JSONEncoder(
        ensure_ascii=False,
        separators=(",", ":"),
        default=default,
        allow_nan=False,
    )
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # not CPython: the pure-Python encoder, built per call
        return encoder.encode
    try:
        c_encoder = make(
            {},
            default,
            json.encoder.encode_basestring,
            None,
            ":",  # key separator
            ",",  # item separator
            False,
            False,
            False,  # allow_nan: a NaN raises, and the careful path writes it as a string
        )
    except TypeError:  # the private constructor changed: the public path still works
        return encoder.encode
    encode_string = json.encoder.encode_basestring

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return encode_string(value)
        return "".join(c_encoder(value, 0))

    return encode


def _orjson_encoder() -> Callable[[Any], str] | None:
    """``orjson``'s encoder, if it is installed: 2-3 times the standard library's speed on the
    content of a run (measured in BENCHMARKS.md), and it keeps no state between calls."""
    try:
        import orjson  # noqa: PLC0415 - optional: only its absence is handled here
    except ImportError:
        return None
    dumps = orjson.dumps
    # Dates and dataclasses go through `plain`, as on the standard library's path, so that the
    # text does not depend on which encoder wrote it; keys that are not strings are written as
    # strings, as json writes them. (Subclasses of str, int, dict and list are encoded as
    # their base type by both.)
    option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    option |= orjson.OPT_NON_STR_KEYS

    def encode(value: Any) -> str:
        return dumps(value, default=plain, option=option).decode()

    return encode


_fast = _orjson_encoder()
_encoders = _Encoders()
_careful = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_safe_repr, allow_nan=False
)


def to_json(value: Any) -> str:
    """``value`` as compact JSON text; any object serializes, nothing raises."""
    if _fast is not None:
        try:
            return _fast(value)
        except TypeError:
            # What orjson refuses (more than 254 levels, an integer beyond 64 bits, a lone
            # surrogate, a cycle) goes the standard library's way, which writes the first three
            # as they are.
            pass
    try:
        return _encoders.encode(value)
    except (ValueError, RecursionError, TypeError):
        _encoders.reset()  # a failed encoding may leave its cycle table dirty
    try:
        return _careful.encode(_walk(value, set(), 0))
    except Exception:
        return _careful.encode(_safe_repr(value))

"""Trace search as Jaeger asks for it: service, operation, attributes, times, durations.

A trace matches when one of its spans meets every condition (the conjunction is per span, as
Jaeger's own stores have it). An attribute is looked up where the writer put it: in its own
column for the names the row builder takes out (``langchain.run_type``, token counts, ...), as
the status for Jaeger's ``error`` tag, and in the ``attributes`` JSON otherwise. Values compare
as text, since Jaeger's UI sends every tag value as a string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, cast, or_

from runspan.attributes import COLUMNS, SERVICE_NAME
from runspan.storage.records import runs_v
from runspan.storage.sqlfuncs import json_member_text

_v = runs_v.c
# Attributes Jaeger users type that are columns of their own (beyond the vocabulary's).
_NAMED_COLUMNS = {SERVICE_NAME: "service_name", "span.kind": "span_kind"}
_TRUE, _FALSE = ("true", "1"), ("false", "0")
DEFAULT_SEARCH_DEPTH = 20
MAX_SEARCH_DEPTH = 1000


@dataclass(frozen=True)
class TraceSearch:
    """What to find; every field is optional but the search depth (how many traces)."""

    service: str | None = None
    operation: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    start_min_ns: int | None = None
    start_max_ns: int | None = None
    duration_min_ms: float | None = None
    duration_max_ms: float | None = None
    depth: int = DEFAULT_SEARCH_DEPTH

    def conditions(self) -> list[Any]:
        found: list[Any] = [_v.end_ns.is_not(None)]  # a span is shown once it has ended
        if self.service:
            found.append(_v.service_name == self.service)
        if self.operation:
            found.append(_v.name == self.operation)
        if self.start_min_ns is not None:
            found.append(_v.start_ns >= self.start_min_ns)
        if self.start_max_ns is not None:
            found.append(_v.start_ns <= self.start_max_ns)
        if self.duration_min_ms is not None:
            found.append(_v.duration_ms >= self.duration_min_ms)
        if self.duration_max_ms is not None:
            found.append(_v.duration_ms <= self.duration_max_ms)
        found += [attribute_condition(key, value) for key, value in self.attributes.items()]
        return found


def attribute_condition(key: str, value: str) -> Any:
    """The condition that a span has attribute ``key`` equal to ``value``."""
    lowered = value.strip().lower()
    if key == "error":  # Jaeger's error tag: the span failed
        failed = _v.status == "error"
        return failed if lowered in _TRUE else ~failed
    if key == "otel.status_code":
        failed = _v.status == "error"
        return failed if lowered == "error" else ~failed
    column = _NAMED_COLUMNS.get(key) or COLUMNS.get(key)
    if column is not None:
        return cast(getattr(_v, column), String) == value
    found = json_member_text(_v.attributes, key)
    if lowered in _TRUE or lowered in _FALSE:  # a JSON boolean reads as 1/0 in SQLite
        return or_(found == value, found.in_(_TRUE if lowered in _TRUE else _FALSE))
    return found == value

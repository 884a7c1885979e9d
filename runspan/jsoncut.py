"""A JSON value cut to a budget of characters that is still the same JSON shape.

Attributes whose readers parse them (the GenAI messages, which Jaeger's GenAI tab renders and
schema checks validate) cannot be cut mid-text like a plain string. Their strings share the
budget in order instead: each keeps what is left of it, and one cut short ends with a marker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _unchanged(text: str) -> str:
    return text


def cut_strings(
    value: Any,
    budget: int,
    cut: Callable[[str, int], str],
    whole: Callable[[str], str] = _unchanged,
) -> Any:
    """``value`` (plain JSON data) with its strings kept to ``budget`` characters in all:
    ``whole(text)`` for one that fits what is left, ``cut(text, kept)`` for one that does not."""
    left = budget

    def walk(item: Any) -> Any:
        nonlocal left
        if isinstance(item, str):
            kept = left
            left = max(0, left - len(item))
            return whole(item) if len(item) <= kept else cut(item, kept)
        if isinstance(item, list):
            return [walk(element) for element in item]
        if isinstance(item, dict):
            return {key: walk(element) for key, element in item.items()}
        return item

    return walk(value)

"""Inputs and outputs as capped, redacted JSON attributes.

runspan records content the way OpenInference does, as ``input.value`` / ``output.value`` with a
mime type beside each: one attribute per side whatever the run type, readable in Jaeger and easy
to query in SQL. A value cut at the cap becomes ``text/plain``, since it is no longer valid JSON.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.util.types import AttributeValue

from runspan.attributes import (
    INPUT_MIME_TYPE,
    INPUT_VALUE,
    JSON_MIME,
    OUTPUT_MIME_TYPE,
    OUTPUT_VALUE,
    TEXT_MIME,
)
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

"""Which conversation and which user a run belongs to: ``session.id`` and ``user.id``.

They come from what LangChain apps already pass, in the run's metadata (``session_id``,
``thread_id`` as LangGraph's configurable puts it there, ``conversation_id``; ``user_id``), else
from the handler's ``session_id`` / ``user_id``. A root decides for its trace, so that every run
of a trace carries them, including runs whose own metadata does not; a run whose metadata names
another keeps its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from runspan.attributes import SESSION_ID, THREAD_KEY, USER_ID
from runspan.tracer.runs import RunTree
from runspan.tracer.settings import TracerSettings

# Metadata keys LangChain apps already pass for a conversation (in this order) and a user. They
# are the application's words, as they appear in its metadata, not attribute names.
SESSION_KEYS = ("session_id", THREAD_KEY, "conversation_id")
USER_KEY = "user_id"


def _named(metadata: Mapping[str, Any] | None, keys: tuple[str, ...]) -> str | None:
    if not metadata:
        return None
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def identify(
    tree: RunTree,
    metadata: Mapping[str, Any] | None,
    settings: TracerSettings,
    attributes: dict[str, AttributeValue],
    *,
    root: bool,
) -> None:
    """Record the run's session and user; a root's become its trace's."""
    session = _named(metadata, SESSION_KEYS)
    user = _named(metadata, (USER_KEY,))
    if root:
        tree.session_id = session or settings.session_id
        tree.user_id = user or settings.user_id
    session = session or tree.session_id
    user = user or tree.user_id
    if session:
        attributes[SESSION_ID] = session
    if user:
        attributes[USER_ID] = user

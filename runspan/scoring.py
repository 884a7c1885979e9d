"""``runspan.feedback()``: a score or label for a run, from the application.

A thumbs-up in a chat UI, an evaluator's correctness score, a reviewer's comment: each becomes a
row of the ``feedback`` table, joined to its run in ``feedback_v`` and groupable in ``runspan
stats --by feedback --key KEY``. The call never waits for the database and never raises into the
application: the row is queued and written by the SQL writer's side, as spans are.
"""

from __future__ import annotations

from typing import Any

from runspan.logs import RateLimitedLog
from runspan.storage.feedback import feedback_row
from runspan.storage.processor import StorageSpanProcessor, live_processors

_notices = RateLimitedLog(interval=60.0)


def _writer() -> StorageSpanProcessor | None:
    """Where runs go: runspan.configure()'s database, else the newest SQL writer in this
    process (a provider of the app's own), else the default provider's (as for the seed line)."""
    from runspan.provider import configured_provider, storage_of  # noqa: PLC0415 - light by now

    configured = configured_provider()
    if configured is not None:
        return storage_of(configured)
    live = live_processors()
    if live:
        return live[-1]
    from runspan.default_provider import default_provider  # noqa: PLC0415 - builds on first use

    return storage_of(default_provider.get())


def feedback(
    run_id: Any,
    key: str,
    *,
    score: float | None = None,
    value: str | None = None,
    comment: str | None = None,
) -> bool:
    """Record feedback on a run: a ``score`` (a number), a ``value`` (a label), or both, under
    ``key``, with an optional ``comment``. Safe from any thread; returns at once.

    Returns ``True`` when the feedback is queued for the database. Never raises: a bad argument
    (not a run id, no key, no score or value) or no database to write to is logged, once a
    minute at most, and gives ``False``.
    """
    try:
        row = feedback_row(run_id, key, score=score, value=value, comment=comment)
    except ValueError as error:
        _notices.log("argument", f"runspan.feedback: {error}; not stored")
        return False
    try:
        writer = _writer()
        if writer is None:
            _notices.log("nowhere", "runspan.feedback: no runspan database here; not stored")
            return False
        return writer.feedback.put(row)
    except Exception:
        _notices.exception("failed", "runspan.feedback failed; not stored")
        return False

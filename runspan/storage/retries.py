"""Failed attempts that a LangGraph RetryPolicy ran again are ``retried``, not ``error``.

Each attempt of a node is a run of its own, and a failed attempt has ended (and may be stored)
before anyone knows whether another attempt follows. So the later attempt, which carries its
attempt number, marks the earlier failures of the same task when it is written: error rates
then count what failed, not what was retried and succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, literal, update

from runspan.attributes import TASK_KEY
from runspan.storage.rows import RowValues
from runspan.storage.schema import runs
from runspan.storage.sqlfuncs import json_member_text

_MARK_RETRIED = (
    update(runs)
    .where(
        runs.c.trace_id == bindparam("trace"),
        runs.c.parent_span_id == bindparam("parent"),
        runs.c.name == bindparam("run_name"),
        runs.c.status == "error",
        func.coalesce(runs.c.attempt, 1) < bindparam("later_attempt"),
        json_member_text(runs.c.metadata, literal(TASK_KEY)) == bindparam("task"),
    )
    .values(status="retried")
)


def _task(metadata: Any) -> str | None:
    try:
        task = json.loads(metadata).get(TASK_KEY) if isinstance(metadata, str) else None
    except (ValueError, AttributeError):
        return None
    return task if isinstance(task, str) else None


def mark_retried(connection: Connection, rows: Sequence[RowValues]) -> None:
    """Mark the failed earlier attempts of the retried tasks among ``rows``, in the caller's
    transaction (before the traces' error counts are computed)."""
    marks = []
    for row in rows:
        attempt = row["attempt"]
        if attempt is None or attempt < 2 or row["parent_span_id"] is None:
            continue
        task = _task(row["metadata"])
        if task is not None:
            marks.append(
                {
                    "trace": row["trace_id"],
                    "parent": row["parent_span_id"],
                    "run_name": row["name"],
                    "later_attempt": attempt,
                    "task": task,
                }
            )
    if marks:
        connection.execute(_MARK_RETRIED, marks)

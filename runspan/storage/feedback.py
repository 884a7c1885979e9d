"""Feedback on runs: scores and labels people or evaluators give a run, in the ``feedback`` table.

A row names its run, a key (``"thumbs"``, ``"correctness"``), a numeric score and/or a text
value, a comment, where it came from (``python``, ``cli``, ``http``) and when. The run's trace is
filled in when the run is already stored (``feedback_v`` joins the run in any case).

From an application, :class:`FeedbackQueue` takes rows on any thread without waiting: a bounded
queue that a thread of its own writes every second, in batches, through the span writer's lock;
``flush`` (after the spans) and shutdown write what is queued.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, text

from runspan.logs import RateLimitedLog

SOURCES = ("python", "cli", "http")
DEFAULT_MAX_QUEUED = 10_000
_WRITE_EVERY_SECONDS = 1.0
_MAX_KEY_CHARS, _MAX_TEXT_CHARS = 200, 10_000

FeedbackRow = dict[str, Any]

# The run id is used twice: cast alike, or PostgreSQL deduces two types for one parameter.
_INSERT = text(
    "INSERT INTO feedback (run_id, trace_id, key, score, value, comment, source, created_ns)"
    " VALUES (CAST(:run_id AS VARCHAR), (SELECT max(r.trace_id) FROM runs r"
    " WHERE r.run_id = CAST(:run_id AS VARCHAR)),"
    " :key, :score, :value, :comment, :source, :created_ns)"
)


def feedback_row(
    run_id: object,
    key: object,
    *,
    score: object = None,
    value: object = None,
    comment: object = None,
    source: str = "python",
) -> FeedbackRow:
    """A checked feedback row.

    Raises:
        ValueError: a run id that is not a UUID, an empty key, a score that is not a finite
            number, neither a score nor a value, or a text over its length.
    """
    try:
        run = str(uuid.UUID(str(run_id)))
    except ValueError:
        raise ValueError(f"run id {run_id!r}: use a LangChain run id (a UUID)") from None
    if not isinstance(key, str) or not key.strip() or len(key) > _MAX_KEY_CHARS:
        raise ValueError(f"key {key!r}: use a name such as 'thumbs' (up to 200 characters)")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ValueError(f"score {score!r}: use a number (1, 0, 0.75), or leave it out")
        if not math.isfinite(score):
            raise ValueError(f"score {score!r}: use a finite number")
    if score is None and value is None:
        raise ValueError("give a score, a value, or both")
    for name, given in (("value", value), ("comment", comment)):
        if given is not None and (not isinstance(given, str) or len(given) > _MAX_TEXT_CHARS):
            raise ValueError(f"{name}: use text of up to {_MAX_TEXT_CHARS:,} characters")
    if source not in SOURCES:
        raise ValueError(f"source {source!r}: one of {', '.join(SOURCES)}")
    return {
        "run_id": run,
        "key": key.strip(),
        "score": float(score) if score is not None else None,
        "value": value,
        "comment": comment,
        "source": source,
        "created_ns": time.time_ns(),
    }


def insert_feedback(connection: Connection, rows: Sequence[FeedbackRow]) -> None:
    """Insert ``rows`` in the caller's transaction."""
    if rows:
        connection.execute(_INSERT, list(rows))


class FeedbackQueue:
    """Feedback rows on their way to the database, written by a thread of its own.

    ``write`` takes a batch and says whether it was written; a batch that was not (the
    database is unreachable) is kept and tried again, within ``max_queued`` rows.
    """

    def __init__(
        self, write: Callable[[list[FeedbackRow]], bool], max_queued: int = DEFAULT_MAX_QUEUED
    ) -> None:
        self._write = write
        self._rows: deque[FeedbackRow] = deque()
        self._max = max_queued
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._writing = False
        self._notices = RateLimitedLog(interval=60.0)

    def put(self, row: FeedbackRow) -> bool:
        """Queue a row; ``False`` (counted and logged) when the queue is full or closed."""
        with self._lock:
            if self._closed or len(self._rows) >= self._max:
                self._notices.log("full", "runspan: feedback dropped: its queue is full or closed")
                return False
            self._rows.append(row)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="runspan-feedback", daemon=True
                )
                self._thread.start()
        return True

    def _run(self) -> None:
        # Written on the span writer's rhythm (and at flush), not at once: feedback given right
        # after its run then usually finds the run stored, and its row gets the run's trace.
        while True:
            with self._lock:
                if not self._closed:
                    self._lock.wait(_WRITE_EVERY_SECONDS)
                if self._closed and not self._rows:
                    return
            self._write_queued()

    def _write_queued(self) -> bool:
        with self._lock:
            if self._writing or not self._rows:
                return not self._rows
            self._writing = True
            batch = list(self._rows)
        written = False
        try:
            written = self._write(batch)
        finally:
            with self._lock:
                self._writing = False
                if written:
                    for _ in batch:
                        self._rows.popleft()
                self._lock.notify_all()
        return written

    def flush(self, timeout_seconds: float = 30.0) -> bool:
        """Write what is queued now; ``False`` if it could not be written in time."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self._write_queued():
                with self._lock:
                    if not self._rows:
                        return True
            with self._lock:
                left = deadline - time.monotonic()
                if left <= 0:
                    return not self._rows
                if self._writing:
                    self._lock.wait(min(left, 0.05))
                elif self._rows:
                    self._lock.wait(min(left, 0.2))
                else:
                    return True

    def close(self) -> None:
        """Write what is queued, then stop."""
        self.flush()
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(5)

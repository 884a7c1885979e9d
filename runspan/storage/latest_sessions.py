"""Which conversations can be among the latest: found from the newest traces through the index of
start times, so that ``runspan sessions`` reads those conversations only, not every trace of the
history (sessions_v groups them all).

A session's last activity is its latest trace end. The newest traces are read in a window back
from the latest start, widened until it holds enough sessions. A session can also have ended a
trace after the window began that started before it: such a trace lasted longer than the gap,
so it is found through the index of trace durations. The ids returned hold every session of
the exact answer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, func, select

from runspan.storage.schema import traces

Fetch = Callable[[Any], list[Any]]

#: The first window read back from the newest trace; it grows eightfold while too few are found.
FIRST_WINDOW_NS = 3600 * 10**9
_WIDER = 8
# Beyond this many candidates, reading every session is as fast and keeps the query simple.
MOST_CANDIDATES = 5000
_LONGEST_MS = sys.float_info.max


def latest_session_ids(
    fetch: Fetch, *, limit: int, user: str | None = None, since: int | None = None
) -> list[str] | None:
    """The ids of every session that can be among the ``limit`` with the latest activity (at
    or after ``since``, of ``user``); ``None`` when there are too many to name."""
    t = traces.c
    chosen: list[ColumnElement[bool]] = [t.session_id.is_not(None)]
    if user is not None:
        chosen.append(t.user_id == user)
    # Each end through the index of start times (one query for both would read every trace).
    ends = [
        fetch(select(t.start_ns).where(*chosen).order_by(order).limit(1))
        for order in (t.start_ns, t.start_ns.desc())
    ]
    if not ends[0]:
        return []
    first, newest = ends[0][0]["start_ns"], ends[1][0]["start_ns"]
    window = FIRST_WINDOW_NS
    while True:
        start = newest - window
        lasts = {
            row["session_id"]: row["last_ns"]
            for row in fetch(
                select(t.session_id, func.max(func.coalesce(t.end_ns, t.start_ns)).label("last_ns"))
                .where(*chosen, t.start_ns >= start)
                .group_by(t.session_id)
            )
        }
        if start <= first:  # every trace read: the window's sessions are all there are
            return sorted(lasts) if len(lasts) <= MOST_CANDIDATES else None
        ranked = sorted(lasts.values(), reverse=True)
        if len(ranked) >= limit or (since is not None and start <= since):
            break
        window *= _WIDER
    # The least last activity the answer can hold, as far as the window shows.
    # (Fewer than ``limit`` found means the window reached ``since``.)
    floor: int = ranked[limit - 1] if len(ranked) >= limit else since  # type: ignore[assignment]
    if since is not None:
        floor = max(floor, since)
    candidates = {session for session, last in lasts.items() if last >= floor}
    # Traces that started before the window and ended at or after ``floor``.
    longer_than_ms = (floor - start) / 1e6 - 1.0
    candidates.update(
        row["session_id"]
        for row in fetch(
            select(t.session_id)
            .distinct()
            # A closed range: SQLite, without statistics, then reads the index of durations.
            .where(*chosen, t.start_ns < start, t.duration_ms.between(longer_than_ms, _LONGEST_MS))
        )
    )
    return sorted(candidates) if len(candidates) <= MOST_CANDIDATES else None

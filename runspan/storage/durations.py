"""Ages and times as people type them: ``30d``, ``2h``, ``90s``, or an ISO date and time."""

from __future__ import annotations

import datetime as dt
import re
import time

from runspan.storage.errors import QueryError

# The clock ages are counted from; one name, so a test can move "now".
_now_ns = time.time_ns

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_age(text: str) -> float:
    """Seconds in an age such as ``30d``, ``2h``, ``15m``, ``90s`` or ``1w``.

    Raises:
        QueryError: anything else, with the accepted forms in the message.
    """
    match = _AGE.match(text)
    if match is None:
        raise QueryError(f"{text!r} is not an age: use a number and a unit, like 90s, 15m, 2h, 30d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def ns_ago(text: str, now_ns: int | None = None) -> int:
    """The time ``text`` ago, in nanoseconds since the epoch."""
    now = _now_ns() if now_ns is None else now_ns
    return now - int(parse_age(text) * 1e9)


def parse_moment(text: str, now_ns: int | None = None) -> int:
    """A moment in nanoseconds: an age ago (``2h``) or an ISO date/time (UTC unless it says).

    Raises:
        QueryError: neither form.
    """
    if _AGE.match(text):
        return ns_ago(text, now_ns)
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(
            f"{text!r} is neither an age (2h, 30d) nor a date and time (2026-11-24T13:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000

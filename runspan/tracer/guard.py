"""Callback hooks that never raise into the user's chain, and logs that never flood.

A failure inside a hook is logged and swallowed: the chain's result must not depend on whether
tracing worked. The log is rate-limited per hook, since a bug that fires on every run would
otherwise write a line per run.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

logger = logging.getLogger("runspan")

_F = TypeVar("_F", bound=Callable[..., Any])


class RateLimitedLog:
    """Logs a message per key at most once per ``interval`` seconds, counting the rest."""

    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def exception(self, key: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message = f"{message} ({suppressed} more like it were not logged)"
        logger.warning(message, exc_info=True)


failures = RateLimitedLog()


def never_raises(hook: _F) -> _F:
    """Wrap a callback hook so that an exception inside it is logged, never raised."""
    name = hook.__name__

    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return hook(*args, **kwargs)
        except Exception:
            failures.exception(name, f"runspan: {name} failed; the run's span may be incomplete")
            return None

    return cast(_F, guarded)

"""runspan's logger, and a rate limit for messages that could otherwise repeat per run or batch."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("runspan")


class RateLimitedLog:
    """Logs a message per key at most once per ``interval`` seconds, counting the rest."""

    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(
        self, key: str, message: str, *, level: int = logging.WARNING, exc: bool = False
    ) -> None:
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
        logger.log(level, message, exc_info=exc)

    def exception(self, key: str, message: str) -> None:
        self.log(key, message, exc=True)

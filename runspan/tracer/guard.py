"""Callback hooks that never raise into the user's chain, and logs that never flood.

A failure inside a hook is logged and swallowed: the chain's result must not depend on whether
tracing worked. The log is rate-limited per hook, since a bug that fires on every run would
otherwise write a line per run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from runspan.logs import RateLimitedLog

_F = TypeVar("_F", bound=Callable[..., Any])


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

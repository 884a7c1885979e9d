"""The stored costs and totals: ``traces.cost_usd``, ``sessions`` (a conversation and user's
turns) and ``users_daily`` (a user's UTC day), which traces_v, sessions_v and users_daily_v read
instead of pricing every model run of the history.

The writer keeps them exact in the transaction that writes runs: it prices each trace it
touches as runs_v prices its runs, then counts again each conversation and user's day whose
traces changed, from ``traces``. A change to ``model_prices`` (its triggers move
``price_state.epoch`` on) may change the cost of any run: from then the views price live, from
``runs_v``, until :class:`Repricer`, in the writer's upkeep, has priced every trace and counted
every total again, in chunks between batches.

On PostgreSQL, where several processes write at once, two advisory locks keep that exact: a
writer holds the first, shared, while it prices, and a repricer's chunk waits for it
exclusively, so no trace priced at a price that has since changed is left behind a chunk; and
one writer at a time counts totals again, after the others' traces are committed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, select, text, true, update

from runspan.storage.schema import DAY_NS, price_state, sessions, traces, users_daily

logger = logging.getLogger(__name__)

GroupKey = tuple[str | None, str | None, int]  # a trace's (session, user, start_ns)

# Each names one of runspan's PostgreSQL advisory locks, as (class, number).
_LOCK_CLASS = 0x636F7374  # "cost"
_PRICING, _COUNTING = 0, 1
_KEY_CHUNK = 500
# Traces priced, or conversations and users counted, per repricing transaction, and the time a
# visit of the writer's upkeep may spend before it lets the writer's queue in again.
REPRICE_CHUNK = 2000
REPRICE_SECONDS = 0.5

_LIVE_COST = """(SELECT sum(v.cost_usd) FROM runs_v v WHERE v.trace_id = traces.trace_id
    AND (v.input_tokens IS NOT NULL OR v.output_tokens IS NOT NULL))"""
_TOTALS = """count(*), sum(run_count), sum(error_count), sum(input_tokens), sum(output_tokens),
    sum(total_tokens), sum(cost_usd)"""
_TOTAL_COLUMNS = "turns, runs, errors, input_tokens, output_tokens, total_tokens, cost_usd"
# Sent as the driver's own text: the writer asks for every batch, and SQLAlchemy's statement
# layer cost more than running it (0.1 to 0.5 ms a call, an eighth of the writer's time).
_GROUP_KEYS = (
    "SELECT session_id, user_id, start_ns FROM traces WHERE trace_id {}"
    " AND (session_id IS NOT NULL OR user_id IS NOT NULL)"
)
# The writer's statements are built once: for every batch, building them with the expression
# language cost more than running them.
_FORGET_SESSIONS = text("DELETE FROM sessions WHERE session_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_FORGET_USER_DAYS = text(
    "DELETE FROM users_daily WHERE user_id = :user AND start_day >= :first AND start_day <= :last"
)
_COUNT_SESSIONS = text(
    f"""INSERT INTO sessions (session_id, user_id, first_ns, last_ns, {_TOTAL_COLUMNS})
SELECT session_id, user_id, min(start_ns), max(coalesce(end_ns, start_ns)), {_TOTALS}
FROM traces WHERE session_id IN :ids GROUP BY session_id, user_id"""
).bindparams(bindparam("ids", expanding=True))
_COUNT_USER_DAYS = text(
    f"""INSERT INTO users_daily (user_id, start_day, {_TOTAL_COLUMNS})
SELECT user_id, start_ns / {DAY_NS}, {_TOTALS}
FROM traces WHERE user_id = :user AND start_ns >= :first_ns AND start_ns < :end_ns
GROUP BY user_id, start_ns / {DAY_NS}"""
)
_COUNT_USERS = text(
    f"""INSERT INTO users_daily (user_id, start_day, {_TOTAL_COLUMNS})
SELECT user_id, start_ns / {DAY_NS}, {_TOTALS}
FROM traces WHERE user_id IN :ids GROUP BY user_id, start_ns / {DAY_NS}"""
).bindparams(bindparam("ids", expanding=True))


def _lock(connection: Connection, number: int, *, shared: bool = False) -> None:
    if connection.dialect.name == "postgresql":
        kind = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        connection.execute(
            text(f"SELECT {kind}(:lock_class, :number)"),
            {"lock_class": _LOCK_CLASS, "number": number},
        )


def hold_prices(connection: Connection) -> None:
    """Called by a writer first in a transaction that prices traces (PostgreSQL)."""
    _lock(connection, _PRICING, shared=True)


def group_keys(connection: Connection, trace_ids: Iterable[str]) -> set[GroupKey]:
    """The conversations and users' days that ``trace_ids`` count in, as stored now."""
    ids = list(trace_ids)
    keys: set[GroupKey] = set()
    postgres = connection.dialect.name == "postgresql"
    for start in range(0, len(ids), _KEY_CHUNK):
        chunk = ids[start : start + _KEY_CHUNK]
        if postgres:
            found = connection.exec_driver_sql(_GROUP_KEYS.format("= ANY(%s)"), (chunk,))
        else:
            found = connection.exec_driver_sql(_sqlite_group_keys(len(chunk)), tuple(chunk))
        keys.update((session_id, user_id, start_ns) for session_id, user_id, start_ns in found)
    return keys


@functools.lru_cache(maxsize=64)
def _sqlite_group_keys(count: int) -> str:
    return _GROUP_KEYS.format(f"IN ({', '.join('?' * count)})")


def count_groups(connection: Connection, keys: Iterable[GroupKey]) -> None:
    """Count again, from ``traces``, the conversations and users' days of ``keys`` (those of the
    traces changed, before and after the change), in the caller's transaction."""
    session_ids: set[str] = set()
    days: dict[str, tuple[int, int]] = {}  # a user's first and last day among the keys
    for session_id, user_id, start_ns in keys:
        if session_id is not None:
            session_ids.add(session_id)
        if user_id is not None:
            day = start_ns // DAY_NS
            first, last = days.get(user_id, (day, day))
            days[user_id] = (min(first, day), max(last, day))
    if not session_ids and not days:
        return
    _lock(connection, _COUNTING)
    ordered = sorted(session_ids)
    for start in range(0, len(ordered), _KEY_CHUNK):
        chunk = ordered[start : start + _KEY_CHUNK]
        connection.execute(_FORGET_SESSIONS, {"ids": chunk})
        connection.execute(_COUNT_SESSIONS, {"ids": chunk})
    if days:
        spans = sorted(days.items())
        connection.execute(
            _FORGET_USER_DAYS,
            [{"user": user, "first": first, "last": last} for user, (first, last) in spans],
        )
        connection.execute(
            _COUNT_USER_DAYS,
            [
                {"user": user, "first_ns": first * DAY_NS, "end_ns": (last + 1) * DAY_NS}
                for user, (first, last) in spans
            ],
        )


class Repricer:
    """Prices every trace and counts every total again after a price changed (or after the
    upgrade that made them): the writer's upkeep calls :meth:`visit` now and then. Progress is
    kept in ``price_state``, so that it survives a restart and any writer can carry it on."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic

    def visit(self, engine: Engine, seconds: float = REPRICE_SECONDS) -> bool:
        """Reprice for up to ``seconds``; ``False`` if more is left to do."""
        with engine.connect() as connection:
            state = connection.execute(
                select(price_state.c.epoch, price_state.c.priced_epoch)
            ).one_or_none()
        if state is None or state.epoch == state.priced_epoch:
            return True
        began = self._monotonic()
        while not self._chunk(engine):
            if self._monotonic() - began >= seconds:
                return False
        return True

    def _chunk(self, engine: Engine) -> bool:
        """One transaction's worth; ``True`` once everything is priced."""
        with engine.begin() as connection:
            # On PostgreSQL, the writers pricing now finish first, and no writer holds
            # price_state's row then (a writer holds the lock shared before it may copy a price).
            _lock(connection, _PRICING)
            # A write first: on SQLite it takes the write lock, so what is read next stays as
            # read.
            connection.execute(update(price_state).values(repriced_to=price_state.c.repriced_to))
            state = connection.execute(select(price_state)).one_or_none()
            if state is None or state.epoch == state.priced_epoch:
                return True
            phase, after = "traces", None  # a step's progress: "step:last done", or "step"
            if state.repricing_epoch == state.epoch and state.repriced_to:
                phase, started, done = state.repriced_to.partition(":")
                after = done if started else None
            progress = _STEPS[phase](connection, after)
            if progress is None:  # the last step is done: priced at this epoch
                connection.execute(
                    update(price_state)
                    .where(price_state.c.epoch == state.epoch)
                    .values(priced_epoch=state.epoch, repricing_epoch=None, repriced_to=None)
                )
                logger.info("runspan: stored costs priced again at the current prices")
                return True
            connection.execute(
                update(price_state).values(repricing_epoch=state.epoch, repriced_to=progress)
            )
            return False


def _next_ids(connection: Connection, column: Any, after: str | None) -> list[str]:
    query = select(column).where(column.is_not(None))
    if after is not None:
        query = query.where(column > after)
    return list(
        connection.execute(query.distinct().order_by(column).limit(REPRICE_CHUNK)).scalars()
    )


def _after(column: Any, after: str | None) -> Any:
    return true() if after is None else column > after


def _price_traces(connection: Connection, after: str | None) -> str | None:
    # In order of start: a trace's runs were stored about when it started, so the runs read
    # by one chunk lie together in the database.
    t = traces.c
    after_ns = int(after) if after is not None else -1
    chunk = (
        select(t.start_ns)
        .where(t.start_ns > after_ns)
        .order_by(t.start_ns)
        .limit(REPRICE_CHUNK)
        .subquery()
    )
    last_ns = connection.execute(select(func.max(chunk.c.start_ns))).scalar()
    if last_ns is None:
        return "sessions"
    connection.execute(
        text(
            f"UPDATE traces SET cost_usd = {_LIVE_COST}"
            " WHERE start_ns > :after_ns AND start_ns <= :last_ns"
        ),
        {"after_ns": after_ns, "last_ns": last_ns},
    )
    return f"traces:{last_ns}"


def _count_sessions(connection: Connection, after: str | None) -> str | None:
    _lock(connection, _COUNTING)
    ids = _next_ids(connection, traces.c.session_id, after)
    s = sessions.c
    if not ids:  # and any left of conversations whose traces are gone
        connection.execute(delete(sessions).where(_after(s.session_id, after)))
        return "users"
    connection.execute(delete(sessions).where(_after(s.session_id, after), s.session_id <= ids[-1]))
    connection.execute(_COUNT_SESSIONS, {"ids": ids})
    return f"sessions:{ids[-1]}"


def _count_users(connection: Connection, after: str | None) -> str | None:
    _lock(connection, _COUNTING)
    ids = _next_ids(connection, traces.c.user_id, after)
    u = users_daily.c
    if not ids:
        connection.execute(delete(users_daily).where(_after(u.user_id, after)))
        return None
    connection.execute(delete(users_daily).where(_after(u.user_id, after), u.user_id <= ids[-1]))
    connection.execute(_COUNT_USERS, {"ids": ids})
    return f"users:{ids[-1]}"


_STEPS: dict[str, Callable[[Connection, str | None], str | None]] = {
    "traces": _price_traces,
    "sessions": _count_sessions,
    "users": _count_users,
}

"""`runspan sessions` reads only the conversations that can be among the latest, and answers what
reading every conversation answers: with long traces that started before the newest ones, a
running trace, a user and a time filter, and windows widened many times."""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from runspan.storage import RunStore, SqlSpanExporter, latest_sessions
from runspan.storage.records import SESSION_FIELDS, Session, sessions_v
from runspan.storage.rows import COLUMNS
from runspan.storage.upsert import write_rows
from tests.support import runspan_cli

NOW = time.time_ns()
MINUTE_NS = 60 * 10**9
DAY_NS = 1440 * MINUTE_NS


def turn(session: str, user: str, start_ns: int, duration_ns: int | None) -> dict[str, Any]:
    """A one-run trace of ``session``; ``None`` for a run still running."""
    run_id = uuid.uuid4()
    row = dict.fromkeys(COLUMNS)
    row.update(
        run_id=str(run_id),
        trace_id=run_id.hex,
        span_id=run_id.hex[:16],
        service_name="svc",
        name="chat_turn",
        run_type="chain",
        span_kind="internal",
        status="running" if duration_ns is None else "ok",
        start_ns=start_ns,
        end_ns=None if duration_ns is None else start_ns + duration_ns,
        duration_ms=None if duration_ns is None else duration_ns / 1e6,
        attributes="{}",
        session_id=session,
        user_id=user,
    )
    return row


def conversations() -> list[dict[str, Any]]:
    """300 sessions of 1-4 turns over 30 days, among them: a turn that started 20 days ago and
    ended a minute before the newest one, and a session whose newest turn is still running."""
    rng = random.Random(11)
    rows = [
        turn(f"s{n}", f"u{n % 7}", NOW - rng.randrange(30 * DAY_NS), rng.randrange(MINUTE_NS))
        for n in range(300)
        for _ in range(rng.randrange(1, 5))
    ]
    rows.append(turn("long-one", "u1", NOW - 20 * DAY_NS, 20 * DAY_NS - MINUTE_NS))
    rows.append(turn("still-running", "u2", NOW - 30 * MINUTE_NS, None))
    rows.append(turn("newest", "u3", NOW, MINUTE_NS // 2))
    return rows


@pytest.fixture
def store(database_url: str, read_url: str) -> Any:
    SqlSpanExporter(database_url).shutdown()  # the schema
    engine = create_engine(database_url)
    with engine.begin() as connection:
        write_rows(connection, conversations())
    engine.dispose()
    with RunStore(read_url) as opened:
        yield opened


def every_session(store: RunStore, limit: int, **where: Any) -> list[Session]:
    """What reading every conversation answers."""
    s = sessions_v.c
    query = select(*(s[f] for f in SESSION_FIELDS)).order_by(s.last_ns.desc()).limit(limit)
    if "user" in where:
        query = query.where(s.user_id == where["user"])
    if "since" in where:
        query = query.where(s.last_ns >= where["since"])
    return [Session(**{f: row[f] for f in SESSION_FIELDS}) for row in store._fetch(query)]


CASES = [
    {"limit": 1},
    {"limit": 5},
    {"limit": 50},
    {"limit": 500},
    {"limit": 10, "user": "u1"},
    {"limit": 50, "since": NOW - 3 * DAY_NS},
    {"limit": 3, "user": "u2", "since": NOW - 2 * DAY_NS},
]


@pytest.mark.parametrize("window_ns", [latest_sessions.FIRST_WINDOW_NS, MINUTE_NS])
def test_the_latest_sessions_are_what_reading_every_one_gives(
    store: RunStore, window_ns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(latest_sessions, "FIRST_WINDOW_NS", window_ns)
    for case in CASES:
        where = {key: value for key, value in case.items() if key != "limit"}
        exact = every_session(store, case["limit"], **where)
        assert exact, case
        assert store.sessions(**case) == exact, case
    top = [session.session_id for session in store.sessions(limit=3)]
    # The long turn ended after every other but the newest; the running one counts its start.
    assert top == ["newest", "long-one", "still-running"]


def test_fewer_ids_than_sessions_are_read_and_too_many_read_them_all(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = latest_sessions.latest_session_ids(store._fetch, limit=5)
    assert chosen is not None
    assert 5 <= len(chosen) < 50  # of 303 sessions
    monkeypatch.setattr(latest_sessions, "MOST_CANDIDATES", 4)
    assert latest_sessions.latest_session_ids(store._fetch, limit=5) is None
    assert store.sessions(limit=5) == every_session(store, 5)


def test_the_command_lists_the_latest_conversations(database_url: str, read_url: str) -> None:
    SqlSpanExporter(database_url).shutdown()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        write_rows(connection, conversations())
    engine.dispose()
    done = runspan_cli(read_url, "sessions", "--limit", "3", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert [row["session_id"] for row in shown] == ["newest", "long-one", "still-running"]

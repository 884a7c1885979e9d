"""Stored costs and totals (traces.cost_usd, sessions, users_daily): what the writer keeps equals
what runs_v prices live, through conversations, traces that change day or user, a price that
changes, retention and the upgrade of a database made before them; on both databases."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from runspan.storage import RunStore
from runspan.storage.engine import create_writer_engine, database_url_from
from runspan.storage.maintenance import prune
from runspan.storage.migrate import upgrade
from runspan.storage.retention import Upkeep
from runspan.storage.schema import DAY_NS
from runspan.storage.trace_costs import REPRICE_CHUNK, Repricer
from runspan.storage.upsert import write_rows
from tests.storage.conftest import Stored, migrate_down
from tests.storage.test_documented_queries import _documented
from tests.storage.test_retention import NOW, trace_rows, write
from tests.storage.test_sessions import _converse
from tests.support import runspan_cli

# Each trace's cost as runs_v prices its runs now, whatever is stored.
_LIVE_TRACES = """SELECT t.*, (SELECT sum(v.cost_usd) FROM runs_v v WHERE v.trace_id = t.trace_id)
    AS live_cost FROM traces t"""
_LIVE_SESSIONS = f"""SELECT session_id, user_id, min(start_ns), max(coalesce(end_ns, start_ns)),
    count(*), sum(run_count), sum(error_count), sum(input_tokens), sum(output_tokens),
    sum(total_tokens), sum(live_cost)
FROM ({_LIVE_TRACES}) AS t WHERE session_id IS NOT NULL GROUP BY session_id, user_id"""
_LIVE_USER_DAYS = f"""SELECT user_id, start_ns / {DAY_NS}, count(*), sum(run_count),
    sum(error_count), sum(input_tokens), sum(output_tokens), sum(total_tokens), sum(live_cost)
FROM ({_LIVE_TRACES}) AS t WHERE user_id IS NOT NULL GROUP BY user_id, start_ns / {DAY_NS}"""
_SESSIONS_V = """SELECT session_id, user_id, first_ns, last_ns, turns, runs, errors, input_tokens,
    output_tokens, total_tokens, cost_usd FROM {}"""
_USERS_DAILY_V = """SELECT user_id, start_day, turns, runs, errors, input_tokens, output_tokens,
    total_tokens, cost_usd FROM {}"""
# gpt-4o-mini's seeded price, and one of yours for it from the epoch on.
_SEEDED, _YOURS = (0.15, 0.60), (1.00, 2.00)


def _rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return sorted(
            tuple(pytest.approx(v) if isinstance(v, float) else v for v in row)
            for row in connection.execute(text(sql))
        )


def _priced(engine: Engine) -> bool:
    with engine.connect() as connection:
        epoch, priced = connection.execute(
            text("SELECT epoch, priced_epoch FROM price_state")
        ).one()
    return bool(epoch == priced)


def _assert_stored_is_live(engine: Engine) -> None:
    """The stored totals are those of runs_v's prices, and the views show them."""
    assert _priced(engine)
    traces = _rows(engine, f"SELECT trace_id, cost_usd, live_cost FROM ({_LIVE_TRACES}) AS t")
    assert traces
    assert all(stored == live for _, stored, live in traces)
    assert _rows(engine, _SESSIONS_V.format("sessions")) == _rows(engine, _LIVE_SESSIONS)
    assert _rows(engine, _USERS_DAILY_V.format("users_daily")) == _rows(engine, _LIVE_USER_DAYS)
    _assert_views_are_live(engine)


def _assert_views_are_live(engine: Engine) -> None:
    traces = _rows(engine, "SELECT trace_id, cost_usd FROM traces_v")
    assert traces == _rows(engine, f"SELECT trace_id, live_cost FROM ({_LIVE_TRACES}) AS t")
    assert _rows(engine, _SESSIONS_V.format("sessions_v")) == _rows(engine, _LIVE_SESSIONS)
    assert _rows(engine, _USERS_DAILY_V.format("users_daily_v")) == _rows(engine, _LIVE_USER_DAYS)


def _session_cost(engine: Engine, table: str, session_id: str) -> float:
    with engine.connect() as connection:
        return float(
            connection.execute(
                text(f"SELECT cost_usd FROM {table} WHERE session_id = :s"), {"s": session_id}
            ).scalar_one()
        )


def _reprice(engine: Engine) -> None:
    """What the writer's upkeep does between batches, until it is done."""
    clock = [0.0]
    upkeep = Upkeep(monotonic=lambda: clock[0])
    for _ in range(100):
        upkeep.visit_if_due(engine)
        if _priced(engine):
            return
        clock[0] += 60.0
    raise AssertionError("the upkeep did not price the stored costs again")


def test_the_writer_keeps_each_trace_conversation_and_user_day_priced(stored: Stored) -> None:
    """Two users' conversations: every trace's stored cost, each conversation's and each user's
    day's totals are what runs_v prices, and sessions_v reads them (gpt-4o-mini's seeded price:
    340 input and 60 output tokens a conversation)."""
    _converse(stored.handler, "trip-ann", "ann")
    _converse(stored.handler, "trip-bob", "bob", turns=2)
    stored.flush()
    engine = create_engine(stored.url)
    try:
        _assert_stored_is_live(engine)
        expected = (340 * _SEEDED[0] + 60 * _SEEDED[1]) / 1e6
        assert _session_cost(engine, "sessions", "trip-ann") == pytest.approx(expected)
        assert _session_cost(engine, "sessions_v", "trip-ann") == pytest.approx(expected)
    finally:
        engine.dispose()


def test_a_trace_that_changes_day_or_user_leaves_its_old_totals(database_url: str) -> None:
    """A trace's first run, stored on a day, with a conversation but no user; a later batch
    brings an earlier run (the day before) that names the user: the trace counts once, on the
    new day, and in the conversation as the user's."""
    engine = create_engine(database_url)
    try:
        now = time.time_ns()
        first, earlier = trace_rows(now, runs=2)
        earlier.update(start_ns=now - DAY_NS, end_ns=now - DAY_NS + 1000, user_id="bob")
        first.update(session_id="talk", user_id="ann")
        write(database_url, [first])
        with engine.begin() as connection:
            write_rows(connection, [earlier])
        _assert_stored_is_live(engine)
        day_rows = _rows(engine, "SELECT user_id, start_day, turns FROM users_daily")
        # The trace's user is the greatest its runs name (bob); ann's day is gone.
        assert day_rows == [("bob", (now - DAY_NS) // DAY_NS, 1)]
        assert _rows(engine, "SELECT session_id, user_id, turns FROM sessions") == [
            ("talk", "bob", 1)
        ]
    finally:
        engine.dispose()


def test_a_price_change_is_priced_at_once_by_the_views_and_stored_by_the_writer(
    stored: Stored,
) -> None:
    """A price of yours, then changed, then deleted (as a user would, with SQL): after each,
    the views price live at once; the stored totals are priced again by the writer's upkeep."""
    _converse(stored.handler, "trip-ann", "ann")
    stored.flush()
    engine = create_engine(stored.url)
    tokens = (340, 60)

    def cost(prices: tuple[float, float]) -> float:
        return (tokens[0] * prices[0] + tokens[1] * prices[1]) / 1e6

    changes = [
        (
            "INSERT INTO model_prices (model_pattern, input_usd_per_mtok, output_usd_per_mtok,"
            " valid_from_ns, source) VALUES ('gpt-4o-mini%', 1.0, 2.0, 0, 'ours')",
            _YOURS,
        ),
        (
            "UPDATE model_prices SET output_usd_per_mtok = 4.0 WHERE source = 'ours'",
            (_YOURS[0], 4.0),
        ),
        ("DELETE FROM model_prices WHERE source = 'ours'", _SEEDED),
    ]
    try:
        for statement, prices in changes:
            with engine.begin() as connection:
                connection.execute(text(statement))
            assert not _priced(engine)
            _assert_views_are_live(engine)
            assert _session_cost(engine, "sessions_v", "trip-ann") == pytest.approx(cost(prices))
            # As `runspan sql` reads (on PostgreSQL, a role that can only read).
            shown = runspan_cli(
                stored.read_url,
                "sql",
                "SELECT cost_usd FROM sessions_v UNION ALL"
                " SELECT sum(cost_usd) FROM users_daily_v UNION ALL"
                " SELECT sum(cost_usd) FROM traces_v",
                "--format",
                "json",
            )
            assert shown.returncode == 0, shown.stderr
            assert [row["cost_usd"] for row in json.loads(shown.stdout)] == [
                pytest.approx(cost(prices))
            ] * 3
            _reprice(engine)
            _assert_stored_is_live(engine)
            assert _session_cost(engine, "sessions", "trip-ann") == pytest.approx(cost(prices))
    finally:
        engine.dispose()


def _model_trace(number: int, model: str) -> list[dict[str, Any]]:
    """A trace of a chain and a model call whose tokens grow with ``number``: a turn of one of
    22 conversations (more than query 20 lists), every third without a user."""
    root, call = trace_rows(NOW - (50 - number) * 10**9, runs=2)
    call.update(run_type="llm", model_name=model, input_tokens=100 * (number + 1), output_tokens=10)
    call["total_tokens"] = call["input_tokens"] + call["output_tokens"]
    for row in (root, call):
        row["session_id"] = f"trip-{number % 22}"  # two turns, of one model
        row["user_id"] = None if number % 22 % 3 == 0 else f"user-{number % 22 % 2}"
    return [root, call]


# Each documented ranking by cost, the same question asked of its view, and the columns of the
# answer that name a row and give its cost.
_RANKINGS = {
    "12. The most expensive traces": (
        "SELECT trace_id, cost_usd FROM traces_v WHERE cost_usd IS NOT NULL"
        " AND total_tokens IS NOT NULL ORDER BY cost_usd DESC, total_tokens DESC LIMIT 10",
        ("trace_id", "cost_usd"),
    ),
    "20. The conversations that cost the most": (
        "SELECT session_id, user_id, cost_usd FROM sessions_v WHERE cost_usd IS NOT NULL"
        " ORDER BY cost_usd DESC, last_ns DESC LIMIT 20",
        ("session_id", "user_id", "cost_usd"),
    ),
}


@pytest.mark.parametrize("heading", list(_RANKINGS))
def test_the_rankings_by_cost_are_the_views_before_and_after_a_price_change(
    database_url: str, read_url: str, heading: str
) -> None:
    """Queries 12 and 20 read the index of stored costs while they are current, and the views'
    live costs after a price change until the writer has priced everything again: their rows
    are the views' in every state (a price making the cheap model the dear one included)."""
    write(
        database_url,
        *(_model_trace(n, "gpt-4o-mini" if n % 2 else "gpt-4o") for n in range(44)),
    )
    engine = create_engine(database_url)
    truth, columns = _RANKINGS[heading]

    def ranked() -> list[tuple[Any, ...]]:
        with RunStore(read_url) as store:
            shown = store.sql(_documented(heading))
            expected = store.sql(truth).rows
        at = [shown.columns.index(name) for name in columns]
        # Query 20 rounds its cost as a NUMERIC: a Decimal on PostgreSQL.
        picked = [(*(row[i] for i in at[:-1]), float(row[at[-1]])) for row in shown.rows]
        assert picked == [(*row[:-1], pytest.approx(row[-1], abs=1e-6)) for row in expected]
        return picked

    try:
        assert _priced(engine)
        before = ranked()
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO model_prices (model_pattern, input_usd_per_mtok,"
                    " output_usd_per_mtok, valid_from_ns, source)"
                    " VALUES ('gpt-4o-mini%', 100.0, 100.0, 0, 'ours')"
                )
            )
        assert not _priced(engine)
        changed = ranked()
        assert changed != before  # the mini model's lead now
        _reprice(engine)
        assert ranked() == changed
    finally:
        engine.dispose()


def test_retention_leaves_the_totals_of_what_is_kept(database_url: str) -> None:
    """`runspan prune` removes a user's old traces: the conversation keeps its later turn, and
    the old day is gone from the user's days."""
    now = time.time_ns()
    old, kept = trace_rows(now - 10 * DAY_NS), trace_rows(now)
    for row in (*old, *kept):
        row.update(session_id="long-talk", user_id="ann", total_tokens=5)
    write(database_url, old, kept)
    engine = create_engine(database_url)
    try:
        assert _rows(engine, "SELECT turns FROM sessions") == [(2,)]
        prune(5 * 86_400, database_url)
        _assert_stored_is_live(engine)
        assert _rows(engine, "SELECT turns, total_tokens FROM sessions") == [(1, 15)]
        assert _rows(engine, "SELECT start_day FROM users_daily") == [(now // DAY_NS,)]
    finally:
        engine.dispose()


def test_an_upgraded_database_is_priced_live_then_stored(database_url: str) -> None:
    """Traces stored at revision 0012: after the upgrade the views price them live, and the
    writer's upkeep fills the stored costs and totals, in chunks (more traces than a chunk)."""
    engine = create_writer_engine(database_url_from(database_url))
    upgrade(engine, "0012")
    now = time.time_ns()
    with engine.begin() as connection:
        for n in range(REPRICE_CHUNK + 5):
            connection.execute(
                text(
                    "INSERT INTO runs (trace_id, span_id, name, span_kind, status, start_ns,"
                    " end_ns, model_name, input_tokens, output_tokens, user_id, session_id)"
                    " VALUES (:trace, 'aaaaaaaaaaaaaaaa', 'model', 'client', 'ok', :start,"
                    " :start + 5, 'gpt-4o-mini', 1000, 100, 'ann', :session)"
                ),
                {"trace": f"{n:032x}", "start": now + n % 7, "session": f"s{n % 3}"},
            )
        connection.execute(
            text(
                "INSERT INTO traces (trace_id, name, start_ns, end_ns, status, run_count,"
                " error_count, input_tokens, output_tokens, total_tokens, user_id, session_id)"
                " SELECT trace_id, name, start_ns, end_ns, status, 1, 0, input_tokens,"
                " output_tokens, 1100, user_id, session_id FROM runs"
            )
        )
    try:
        upgrade(engine)
        assert not _priced(engine)
        _assert_views_are_live(engine)
        with engine.connect() as connection:
            total = connection.execute(text("SELECT sum(cost_usd) FROM traces_v")).scalar_one()
        each = (1000 * _SEEDED[0] + 100 * _SEEDED[1]) / 1e6
        assert total == pytest.approx(each * (REPRICE_CHUNK + 5))
        assert not Repricer().visit(engine, seconds=0.0)  # one chunk: not done yet
        _reprice(engine)
        _assert_stored_is_live(engine)
    finally:
        engine.dispose()


def test_writers_and_a_repricer_at_once_stay_exact(database_url: str) -> None:
    """Two writers store conversations while prices change and a third process's upkeep
    reprices: nothing fails (no deadlock between the locks), and once repriced, every stored
    total is what runs_v prices."""
    write(database_url)  # the schema
    engines = [create_engine(database_url) for _ in range(3)]
    failures: list[BaseException] = []
    now = time.time_ns()

    def writer(number: int) -> None:
        try:
            for batch in range(15):
                rows = []
                for turn in range(4):
                    for row in trace_rows(now - turn * DAY_NS // 3):
                        row.update(
                            session_id=f"talk-{turn % 3}",
                            user_id=f"user-{number}",
                            model_name="gpt-4o-mini",
                            input_tokens=100 + batch,
                            output_tokens=10,
                        )
                        rows.append(row)
                with engines[number].begin() as connection:
                    write_rows(connection, rows)
                    if batch % 5 == 0:  # as the writer copies an imported price, after its runs
                        connection.execute(
                            text(
                                "INSERT INTO model_prices (model_pattern, input_usd_per_mtok,"
                                " output_usd_per_mtok, valid_from_ns, source)"
                                " VALUES (:pattern, 1.0, 1.0, 0, 'copied')"
                            ),
                            {"pattern": f"model-{number}-{batch}%"},
                        )
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    def repricer() -> None:
        try:
            for round_ in range(6):
                with engines[2].begin() as connection:
                    connection.execute(
                        text(
                            "INSERT INTO model_prices (model_pattern, input_usd_per_mtok,"
                            " output_usd_per_mtok, valid_from_ns, source)"
                            " VALUES ('gpt-4o-mini%', :p, 1.0, :v, 'ours')"
                        ),
                        {"p": 1.0 + round_, "v": round_},
                    )
                Repricer().visit(engines[2], seconds=0.05)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    threads.append(threading.Thread(target=repricer))
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failures, failures
        assert not any(thread.is_alive() for thread in threads)
        _reprice(engines[2])
        _assert_stored_is_live(engines[2])
        assert len(_rows(engines[2], "SELECT session_id FROM sessions")) == 6
    finally:
        for engine in engines:
            engine.dispose()


def test_postgres_counts_a_traces_runs_as_a_share_of_the_table(database_url: str) -> None:
    """PostgreSQL's estimate of a trace's runs must not grow with the table (revision 0013): a
    stale absolute count made the writer walk every run for a trace's root. It holds for the
    partitioned table as a whole and for each day's partition (revision 0018)."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's planner statistics")
    write(database_url, trace_rows(NOW))
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            options = dict(
                connection.execute(
                    text(
                        "SELECT CAST(attrelid AS regclass)::text, attoptions FROM pg_attribute"
                        " WHERE attrelid IN (SELECT CAST('runs' AS regclass) UNION ALL"
                        " SELECT inhrelid FROM pg_inherits"
                        " WHERE inhparent = CAST('runs' AS regclass)) AND attname = 'trace_id'"
                    )
                ).all()
            )
        assert options.pop("runs") == ["n_distinct=-0.1", "n_distinct_inherited=-0.1"]
        assert options  # today's, made by the writer
        assert set(map(tuple, options.values())) == {("n_distinct=-0.1",)}
    finally:
        engine.dispose()


def test_an_empty_session_and_user_are_repriced_too(database_url: str) -> None:
    """A conversation and user named by an empty string (metadata may say so) are counted and
    priced again like any other: repricing starts below every name."""
    rows = trace_rows(time.time_ns())
    for row in rows:
        row.update(session_id="", user_id="", model_name="gpt-4o-mini", input_tokens=1000)
    write(database_url, rows)
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO model_prices (model_pattern, input_usd_per_mtok,"
                    " output_usd_per_mtok, valid_from_ns, source)"
                    " VALUES ('gpt-4o-mini%', 9.0, 9.0, 0, 'ours')"
                )
            )
        _reprice(engine)
        _assert_stored_is_live(engine)
        assert _session_cost(engine, "sessions", "") == pytest.approx(3 * 1000 * 9.0 / 1e6)
    finally:
        engine.dispose()


def test_revision_0013_undone_and_done_again_keeps_every_cost(database_url: str) -> None:
    """Downgraded to 0012, traces_v and sessions_v price live as they did; upgraded again, the
    stored totals are rebuilt and priced by the writer's upkeep."""
    now = time.time_ns()
    rows = trace_rows(now)
    for row in rows:
        row.update(session_id="talk", user_id="ann", model_name="gpt-4o-mini", input_tokens=100)
    write(database_url, rows)
    engine = create_writer_engine(database_url_from(database_url))
    expected = 3 * 100 * _SEEDED[0] / 1e6
    try:
        migrate_down(database_url, "0012")
        assert _session_cost(engine, "sessions_v", "talk") == pytest.approx(expected)
        upgrade(engine)
        assert not _priced(engine)
        assert _session_cost(engine, "sessions_v", "talk") == pytest.approx(expected)
        _reprice(engine)
        _assert_stored_is_live(engine)
    finally:
        engine.dispose()


def test_runs_v_prices_the_same_runs_the_same_before_and_after_revision_0015(
    database_url: str,
) -> None:
    """Revision 0015 looks a price up only for runs with tokens; every run's cost is what it
    was: model runs with and without cached tokens, a model with no price, runs without tokens
    (a chain, a model call that reported none), a price that took effect in the middle."""
    now = time.time_ns()
    rows = trace_rows(now - 3 * DAY_NS, runs=7)
    usage: list[dict[str, Any]] = [
        {"model_name": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 20},
        {"model_name": "gpt-4o-mini", "input_tokens": 300, "cache_read_tokens": 200},
        {"model_name": "no-such-model", "input_tokens": 50, "output_tokens": 5},
        {"model_name": "gpt-4o-mini"},  # a model call that reported no tokens
        {"model_name": "gpt-4o-mini", "output_tokens": 40},
        {"model_name": "gpt-4o-mini", "input_tokens": 10, "cache_creation_tokens": 4},
    ]
    for row, used in zip(rows[1:], usage, strict=True):
        row.update(run_type="llm", **used)
        row["total_tokens"] = (row["input_tokens"] or 0) + (row["output_tokens"] or 0) or None
    write(database_url, rows)
    engine = create_writer_engine(database_url_from(database_url))
    read = text("SELECT span_id, cost_usd FROM runs_v ORDER BY span_id")
    try:
        with engine.begin() as connection:  # a price of yours from the fifth run's start on
            connection.execute(
                text(
                    "INSERT INTO model_prices (model_pattern, input_usd_per_mtok,"
                    " output_usd_per_mtok, valid_from_ns, source)"
                    " VALUES ('gpt-4o-mini%', 1, 2, :start, 'ours')"
                ),
                {"start": rows[4]["start_ns"]},
            )
        with engine.connect() as connection:
            after = connection.execute(read).all()
        migrate_down(database_url, "0014")
        with engine.connect() as connection:
            before = connection.execute(read).all()
        upgrade(engine)
        with engine.connect() as connection:
            again = connection.execute(read).all()
    finally:
        engine.dispose()
    assert after == before == again
    costs = dict(after)
    assert costs[rows[0]["span_id"]] is None  # the chain
    assert costs[rows[3]["span_id"]] is None  # no price for its model
    assert costs[rows[4]["span_id"]] is None  # no tokens
    assert costs[rows[5]["span_id"]] == pytest.approx(40 * 2 / 1e6)  # yours, from its start
    assert costs[rows[1]["span_id"]] == pytest.approx((100 * _SEEDED[0] + 20 * _SEEDED[1]) / 1e6)

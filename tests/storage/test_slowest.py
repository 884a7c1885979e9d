"""Slowest first from ``slowest_runs``: each day's slowest kept by the writer, and the answers of
``runs --slowest`` the same as sorting every run, with any filter (both databases)."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, event, make_url, text

from runspan.storage import RunFilter, RunStore, SqlSpanExporter
from runspan.storage.engine import create_writer_engine, database_url_from
from runspan.storage.maintenance import prune, upgrade_database
from runspan.storage.memo import WriterMemo
from runspan.storage.migrate import upgrade
from runspan.storage.rollup_stats import served
from runspan.storage.rollups import DAY, Rollups
from runspan.storage.rows import COLUMNS
from runspan.storage.schema import DAY_NS
from runspan.storage.slowest import PER_DAY
from runspan.storage.upsert import write_rows
from runspan.testing import postgres as postgres_server

# Until 2 a.m. UTC, the day before: its eve must have been over for the two hours a day waits
# to be rolled up (DAY.closed_ns), whatever the hour the tests run at; as test_rollups' today.
TODAY = (time.time_ns() - DAY.closed_ns) // DAY_NS


def history(days: int = 3, per_day: int = 450, seed: int = 3) -> list[dict[str, Any]]:
    """Roots of three names and two types, durations drawn at random, over ``days`` days."""
    rng = random.Random(seed)
    rows = []
    for age in range(days):
        for _ in range(per_day):
            run_id = uuid.UUID(int=rng.getrandbits(128))
            start = (TODAY - age) * DAY_NS + rng.randrange(DAY_NS - 10**9)
            duration = round(rng.lognormvariate(5, 1.2), 3)
            run_type = rng.choice(["chain", "tool", "llm"])
            row = dict.fromkeys(COLUMNS)
            row.update(
                run_id=str(run_id),
                trace_id=run_id.hex,
                span_id=run_id.hex[:16],
                service_name="svc",
                name=rng.choice(["plan", "answer", "search"]),
                run_type=run_type,
                model_name=rng.choice(["gpt-4o", "claude"]) if run_type == "llm" else None,
                span_kind="internal",
                status=rng.choice(["ok"] * 9 + ["error"]),
                start_ns=start,
                end_ns=start + int(duration * 1e6),
                duration_ms=duration,
                attributes="{}",
            )
            rows.append(row)
    return rows


@pytest.fixture
def stored(database_url: str, read_url: str) -> tuple[str, str, list[dict[str, Any]]]:
    rows = history()
    SqlSpanExporter(database_url).shutdown()  # the schema
    engine = create_engine(database_url)
    memo = WriterMemo()  # as the writer does: statements that would change nothing skipped
    for start in range(0, len(rows), 64):  # in the writer's batches
        with engine.begin() as connection:
            write_rows(connection, rows[start : start + 64], memo=memo)
        memo.committed()
    engine.dispose()
    return database_url, read_url, rows


def brute_force(rows: list[dict[str, Any]], limit: int, **where: Any) -> list[str]:
    since, until = where.pop("since", None), where.pop("until", None)
    skipped = where.pop("skip_types", ())
    matching = [
        row
        for row in rows
        if all(row[key] == value for key, value in where.items())
        and row["run_type"] not in skipped
        and (since is None or row["start_ns"] >= since)
        and (until is None or row["start_ns"] < until)
    ]
    ranked = sorted(matching, key=lambda row: -row["duration_ms"])
    return [row["run_id"] for row in ranked[:limit]]


def test_the_writer_keeps_the_slowest_of_each_day_and_run_type(
    stored: tuple[str, str, list[dict[str, Any]]],
) -> None:
    url, _, rows = stored
    engine = create_engine(url)
    held: dict[tuple[int, str], set[str]] = {}
    with engine.connect() as connection:
        for day, run_type, span in connection.execute(
            text("SELECT start_day, run_type, span_id FROM slowest_runs")
        ):
            held.setdefault((day, run_type), set()).add(span)
    engine.dispose()
    assert len(held) == 9  # three days, three types
    for (day, run_type), spans in held.items():
        of_group = sorted(
            (r for r in rows if r["start_ns"] // DAY_NS == day and r["run_type"] == run_type),
            key=lambda row: -row["duration_ms"],
        )
        assert len(of_group) > PER_DAY  # so that the writer had to choose
        assert spans == {row["span_id"] for row in of_group[:PER_DAY]}


@pytest.mark.parametrize(
    ("limit", "where"),
    [
        (20, {}),
        (PER_DAY + 50, {}),  # more than a day holds: the days are read too
        (10, {"name": "search"}),
        (10, {"run_type": "tool", "status": "error"}),
        (PER_DAY + 20, {"run_type": "chain"}),
        (10, {"skip_types": ("chain",)}),
        (10, {"model_name": "gpt-4o"}),
        (5, {"since": "today"}),
        (5, {"until": "yesterday"}),
    ],
)
def test_slowest_first_is_exact_with_any_filter(
    stored: tuple[str, str, list[dict[str, Any]]], limit: int, where: dict[str, Any]
) -> None:
    _, read_url, rows = stored
    bounds = {"today": TODAY * DAY_NS + 6 * 3600 * 10**9, "yesterday": (TODAY - 1) * DAY_NS}
    where = {key: bounds.get(value, value) for key, value in where.items()}
    filters = {"model" if key == "model_name" else key: value for key, value in where.items()}
    with RunStore(read_url) as store:
        found = store.runs(RunFilter(**filters), limit=limit, order="slowest")
    assert [run.run_id for run in found] == brute_force(rows, limit, **where)


def test_prune_lets_go_of_the_slowest_of_pruned_days(
    stored: tuple[str, str, list[dict[str, Any]]],
) -> None:
    url, read_url, rows = stored
    prune(1.5 * 86_400, url, now_ns=TODAY * DAY_NS + DAY_NS // 2)
    engine = create_engine(url)
    with engine.connect() as connection:
        days = connection.execute(text("SELECT DISTINCT start_day FROM slowest_runs")).scalars()
        assert set(days) == {TODAY, TODAY - 1}
    engine.dispose()
    kept = [row for row in rows if row["start_ns"] >= (TODAY - 1) * DAY_NS]
    with RunStore(read_url) as store:
        found = store.runs(limit=10, order="slowest")
    assert [run.run_id for run in found] == brute_force(kept, 10)


def test_what_the_writer_knows_it_does_not_write_again(database_url: str) -> None:
    """Once a batch committed, the next batch of the same names and of runs faster than their
    day's floor runs no statement for span names or slowest runs; a batch rolled back teaches
    nothing (its names are written by the next)."""
    rows = history(days=1, per_day=400)
    SqlSpanExporter(database_url).shutdown()
    engine = create_engine(database_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    memo = WriterMemo()
    with engine.connect() as connection:
        transaction = connection.begin()
        write_rows(connection, rows[:64], memo=memo)
        transaction.rollback()
    memo.forget_staged()
    assert memo.names == set()
    for start in range(0, 320, 64):
        with engine.begin() as connection:
            write_rows(connection, rows[start : start + 64], memo=memo)
        memo.committed()
    fast = [dict(row, duration_ms=0.001) for row in history(days=1, per_day=64, seed=9)]
    statements.clear()
    with engine.begin() as connection:
        write_rows(connection, fast, memo=memo)
    engine.dispose()
    assert not [sql for sql in statements if "span_names" in sql or "slowest_runs" in sql]
    with RunStore(database_url) as store:
        assert store.services() == ["svc"]
        assert {name for name, _ in store.operations("svc")} == {"plan", "answer", "search"}


def test_a_reader_made_before_reads_the_new_tables(postgres: Any) -> None:
    """Revisions 0008 to 0011 grant their tables and views to the roles that could read runs,
    so a reader made by an older `runspan db create-reader` still lists services, slowest runs
    and stats from the rollups, and asks runs_daily_v."""
    url = postgres_server.create_database(postgres.url)
    role = f"reader_{uuid.uuid4().hex[:8]}"
    try:
        engine = create_writer_engine(database_url_from(url))
        upgrade(engine, "0007")
        engine.dispose()
        admin = create_engine(make_url(postgres.url).set(database=make_url(url).database))
        with admin.begin() as connection:
            connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'x'"))
            connection.execute(
                text(
                    f"GRANT SELECT ON runs, traces, model_prices, runs_v, runspan_schema_version"
                    f" TO {role}"
                )
            )
        admin.dispose()
        upgrade_database(url)
        engine = create_engine(url)
        with engine.begin() as connection:
            write_rows(connection, history(days=2, per_day=30))
        rollups = Rollups()
        while not rollups.visit(engine, time.time_ns()):
            pass
        engine.dispose()
        reader = make_url(url).set(username=role, password="x")
        with RunStore(reader.render_as_string(hide_password=False)) as store:
            assert store.services() == ["svc"]
            assert len(store.runs(limit=5, order="slowest")) == 5
            # And revision 0010's rollups, which stats reads.
            assert served(store._fetch, DAY, None, None)
            every = store.sql("SELECT count(*) FROM runs").rows[0][0]
            assert sum(stat.runs for stat in store.stats("day")) == every
            # And revision 0011's view.
            assert store.sql("SELECT sum(runs) FROM runs_daily_v").rows[0][0] == every
    finally:
        postgres_server.drop_database(postgres.url, url)
        admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()

"""Daily rollups: `runspan stats` over rolled-up days gives what counting every run gives (counts,
errors, tokens, costs exactly; percentiles within half a percent), on both databases; late runs,
prices that change during a day and retention keep it so."""

from __future__ import annotations

import importlib
import json
import math
import random
import re
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Float, create_engine, literal, null, select, text

from runspan.storage import RunStore, SqlSpanExporter, upgrade_database
from runspan.storage import rollup_stats as rollup_stats_module
from runspan.storage import rollups as rollups_module
from runspan.storage.histogram import bucket, percentile
from runspan.storage.maintenance import prune
from runspan.storage.records import RunFilter, Stat
from runspan.storage.retention import Upkeep
from runspan.storage.rollup_search import newest_runs, stretches
from runspan.storage.rollup_stats import PRICE_JOIN, rolled_stats, served
from runspan.storage.rollups import DAY, HOUR, SLICE, Period, Rollups, mark_late
from runspan.storage.rollups import roll_up as roll_up_one
from runspan.storage.rows import COLUMNS
from runspan.storage.schema import DAY_NS
from runspan.storage.sqlfuncs import duration_bucket
from runspan.storage.upsert import write_rows
from tests.storage.conftest import migrate_down
from tests.support import runspan_cli

NOW = time.time_ns()
HOUR_NS = 3600 * 10**9
# The tests' "today": the first day not closed (a day is rolled up DAY.closed_ns, two hours, after
# it ends), so until 2 a.m. UTC the day before. Then its eve is closed and it is not, whatever
# the hour the tests run at.
TODAY = (NOW - DAY.closed_ns) // DAY_NS
# Where the hours not rolled up yet start: the open hour, and the one before it for the ten
# minutes after it ends.
UNROLLED_NS = HOUR.first_open(NOW) * HOUR_NS


def trace(start_ns: int, rng: random.Random, *, tool_fails: bool = False) -> list[dict[str, Any]]:
    """A root chain, a model call with tokens (some cached), a tool in a LangGraph node."""
    root = uuid.uuid4()
    total = rng.lognormvariate(6.0, 1.0)
    rows = []
    for index, (name, run_type) in enumerate(
        [(f"chain_{rng.randrange(3)}", "chain"), ("chat", "llm"), ("search", "tool")]
    ):
        run_id = root if index == 0 else uuid.uuid4()
        duration = total if index == 0 else total * rng.uniform(0.05, 0.5)
        failed = tool_fails and index in (0, 2)
        row = dict.fromkeys(COLUMNS)
        row.update(
            run_id=str(run_id),
            parent_run_id=None if index == 0 else str(root),
            trace_id=root.hex,
            span_id=run_id.hex[:16],
            parent_span_id=None if index == 0 else root.hex[:16],
            service_name="svc",
            name=name,
            run_type=run_type,
            span_kind="internal",
            status="error" if failed else "ok",
            start_ns=start_ns + index * 10**6,
            end_ns=start_ns + index * 10**6 + int(duration * 1e6),
            duration_ms=duration,
            attributes="{}",
            langgraph_node="act" if index == 2 else None,
            attempt=rng.choice([None, 2, 3]) if index == 2 else None,
        )
        if failed:
            row.update(
                error_type=rng.choice(["ToolException", "TimeoutError"]),
                error_message=f"failed after {rng.randrange(1, 4)} tries",
            )
        if run_type == "llm":
            tokens_in, tokens_out = rng.randrange(10, 4000), rng.randrange(1, 900)
            row.update(
                model_name=rng.choice(["gpt-4o-mini-2024-07-18", "gpt-4o", "local-model"]),
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                total_tokens=tokens_in + tokens_out,
                cache_read_tokens=tokens_in // 2 if rng.random() < 0.3 else None,
                ttft_ms=duration * 0.3 if rng.random() < 0.5 else None,
            )
        rows.append(row)
    return rows


def history(days: int = 5, per_day: int = 60, seed: int = 3) -> list[dict[str, Any]]:
    """Traces over the last ``days`` days and today, with a running and an unfinished run."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for back in range(days, -1, -1):
        first = (TODAY - back) * DAY_NS
        for _ in range(per_day):
            start = first + rng.randrange(DAY_NS if back else max(NOW - first - 10**9, 1))
            rows.extend(trace(start, rng, tool_fails=rng.random() < 0.1))
    rows[-1].update(status="running", end_ns=None, duration_ms=None)
    rows[-4].update(status="unfinished", unfinished_reason="cancelled")
    return rows


def write(url: str, rows: list[dict[str, Any]]) -> None:
    SqlSpanExporter(url).shutdown()  # the schema
    engine = create_engine(url)
    with engine.begin() as connection:
        write_rows(connection, rows)
    engine.dispose()


# The days before the tests' today. Until 2 a.m. UTC that today is the day before, whose runs
# are over an hour old after 1 a.m.: written then, they mark it stale, in rolled_days too.
_ROLLED_DAYS = "SELECT {} FROM rolled_days WHERE start_day < :d ORDER BY start_day"


def roll_up(url: str, now_ns: int = NOW) -> None:
    engine = create_engine(url)
    try:
        rollups = Rollups()
        while not rollups.visit(engine, now_ns):
            pass
    finally:
        engine.dispose()


def write_late_runs(url: str) -> None:
    """Failed traces written now for yesterday's second hour and for the first day of
    ``history(days=3)``: once rolled up, that hour and that day turn stale."""
    yesterday = (TODAY - 1) * DAY_NS
    late = [trace(yesterday + HOUR_NS + 10**9, random.Random(5), tool_fails=True)]
    late.append(trace((TODAY - 3) * DAY_NS + HOUR_NS, random.Random(6), tool_fails=True))
    engine = create_engine(url)
    with engine.begin() as connection:
        write_rows(connection, [row for rows in late for row in rows])
    engine.dispose()


def execute(url: str, sql: str, **parameters: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(sql), parameters)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def price_from_noon(url: str, day: int) -> None:
    """A price for the local model that takes effect at noon of ``day``."""
    execute(
        url,
        "INSERT INTO model_prices (model_pattern, input_usd_per_mtok, output_usd_per_mtok,"
        " valid_from_ns) VALUES ('local-model%', 1.0, 2.0, :noon)",
        noon=day * DAY_NS + 12 * HOUR_NS,
    )


def assert_same(rolled: list[Stat], counted: list[Stat]) -> None:
    """Counts, tokens and costs equal; percentiles within half a percent."""
    assert [stat.key for stat in rolled] == [stat.key for stat in counted]
    for got, exact in zip(rolled, counted, strict=True):
        assert (got.runs, got.errors) == (exact.runs, exact.errors), got.key
        assert (got.input_tokens, got.output_tokens, got.total_tokens) == (
            exact.input_tokens,
            exact.output_tokens,
            exact.total_tokens,
        ), got.key
        if exact.cost_usd is None:
            assert got.cost_usd is None, got.key
        else:
            assert got.cost_usd == pytest.approx(exact.cost_usd, rel=1e-9), got.key
        for name in ("p50_ms", "p95_ms", "p99_ms"):
            value, truth = getattr(got, name), getattr(exact, name)
            assert (value is None) == (truth is None), (got.key, name)
            if truth is not None:
                assert value == pytest.approx(truth, rel=0.005), (got.key, name)


FILTERS = [
    RunFilter(),
    RunFilter(since=(TODAY - 3) * DAY_NS + 5 * HOUR_NS),  # a day cut in two, and today
    RunFilter(since=(TODAY - 4) * DAY_NS, until=(TODAY - 1) * DAY_NS),
    RunFilter(run_type="llm", model="gpt-4o-mini"),
    RunFilter(status="error"),
    RunFilter(roots_only=True, skip_types=("tool",)),
    RunFilter(node="act"),
]


def test_stats_over_rolled_up_days_are_what_counting_every_run_gives(
    database_url: str, read_url: str
) -> None:
    write(database_url, history())
    with RunStore(read_url) as store:
        counted = {
            (by, index): store.stats(by, where)
            for by in ("name", "model", "day", "node")
            for index, where in enumerate(FILTERS)
        }
        assert rolled_stats(store._fetch, "name", RunFilter(), (50, 95, 99)) is None
    roll_up(database_url)
    days = [row[0] for row in execute(database_url, _ROLLED_DAYS.format("start_day"), d=TODAY)]
    # Every closed day: the last five, and not today.
    assert sorted(days) == [TODAY - back for back in range(5, 0, -1)]
    with RunStore(read_url) as store:
        assert served(store._fetch, DAY, None, None) == sorted(days)
        # The edges of a period that starts mid-day are read from the hours.
        cut = FILTERS[1].since
        hours = served(store._fetch, HOUR, cut, (TODAY - 2) * DAY_NS)
        assert hours
        assert all(cut // HOUR_NS <= hour < (TODAY - 2) * 24 for hour in hours)
        for (by, index), exact in counted.items():
            rolled = rolled_stats(store._fetch, by, FILTERS[index], (50, 95, 99))
            assert rolled is not None, (by, FILTERS[index])
            assert_same(rolled, exact)
            assert_same(store.stats(by, FILTERS[index]), exact)
        # What the rollups do not keep is counted from every run, exactly.
        by_text = RunFilter(min_duration_ms=100.0)
        assert rolled_stats(store._fetch, "name", by_text, (50, 95, 99)) is None


def test_a_late_run_is_counted_at_once_and_its_day_rolled_up_again(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(database_url, history(days=3, per_day=10))
    roll_up(database_url)
    late = trace((TODAY - 2) * DAY_NS + HOUR_NS, random.Random(9), tool_fails=True)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        write_rows(connection, late)  # written now, for a day over two days ago
    engine.dispose()
    stale = execute(database_url, "SELECT stale FROM rolled_days WHERE start_day = :d", d=TODAY - 2)
    assert stale[0][0] is not None
    with RunStore(read_url) as store:
        exact = _counted(store, monkeypatch)
        assert TODAY - 2 not in served(store._fetch, DAY, None, None)
        assert_same(store.stats("day"), exact)
    roll_up(database_url)
    with RunStore(read_url) as store:
        assert TODAY - 2 in served(store._fetch, DAY, None, None)
        assert_same(store.stats("day"), exact)
    errors = execute(
        database_url,
        "SELECT sum(runs) FROM runs_daily WHERE start_day = :d AND status = 'error'",
        d=TODAY - 2,
    )
    assert errors[0][0] >= 2  # the late trace's root and tool


def _counted(store: RunStore, monkeypatch: pytest.MonkeyPatch, by: str = "day") -> list[Stat]:
    """Stats counted from every run, the rollups set aside."""
    with monkeypatch.context() as patched:
        patched.setattr("runspan.storage.queries.rolled_stats", lambda *_: None)
        return store.stats(by)  # type: ignore[arg-type]


def test_a_price_that_took_effect_during_a_day_prices_that_day_as_its_runs_started(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(database_url, history(days=3, per_day=20))
    price_from_noon(database_url, TODAY - 2)
    roll_up(database_url)
    with RunStore(read_url) as store:
        assert TODAY - 2 not in served(store._fetch, DAY, None, None)
        assert TODAY - 3 in served(store._fetch, DAY, None, None)
        exact = _counted(store, monkeypatch, "model")
        assert any(stat.key == "local-model" and stat.cost_usd for stat in exact)
        assert_same(store.stats("model"), exact)


def test_a_price_that_took_effect_in_the_last_minutes_prices_them_as_their_runs_started(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What no rollup holds is counted from runs, a model's runs priced together: cut where a
    price took effect, each part at its own price."""
    change = UNROLLED_NS + (NOW - UNROLLED_NS) // 2
    rows = history(days=2, per_day=20)
    rng = random.Random(11)
    for start in (UNROLLED_NS + 10**9, change - 10**9, change, change + 10**9):
        for row in trace(start, rng):
            if row["model_name"]:
                row["model_name"] = "local-model"  # the model whose price changes
            rows.append(row)
    write(database_url, rows)
    price_from_noon(database_url, TODAY - 2)  # valid all along the last minutes
    execute(
        database_url,
        "INSERT INTO model_prices (model_pattern, input_usd_per_mtok, output_usd_per_mtok,"
        " cache_read_usd_per_mtok, valid_from_ns) VALUES ('local-model%', 5.0, 7.0, 0.5, :at)",
        at=change,
    )
    roll_up(database_url)
    with RunStore(read_url) as store:
        for by in ("model", "name"):
            exact = _counted(store, monkeypatch, by)
            assert rolled_stats(store._fetch, by, RunFilter(), (50, 95, 99)) is not None
            assert_same(store.stats(by), exact)
            assert any(stat.cost_usd for stat in exact)


def test_retention_takes_the_rollups_of_the_days_it_empties(database_url: str) -> None:
    rows = history(days=5, per_day=10)
    for row in rows:
        row["tags"] = '["kept"]'
    write(database_url, rows)
    roll_up(database_url)
    cutoff = (TODAY - 3) * DAY_NS + 6 * HOUR_NS
    prune((NOW - cutoff) / 1e9, database_url, now_ns=NOW)
    for table, column, first_kept in (
        ("runs_daily_tags", "start_day", TODAY - 3),
        ("runs_hourly_tags", "start_hour", cutoff // HOUR_NS),
    ):
        counted = f"SELECT count(*) FROM {table} WHERE {column} < :n"
        assert execute(database_url, counted, n=first_kept)[0][0] == 0, table
        assert execute(database_url, counted, n=first_kept + 1)[0][0] == 1, table
    days = execute(database_url, _ROLLED_DAYS.format("start_day, stale"), d=TODAY)
    # Days before the cutoff's are gone; the cutoff's lost runs and is stale.
    assert [day for day, _ in days] == [TODAY - 3, TODAY - 2, TODAY - 1]
    assert days[0][1] is not None
    assert (
        execute(database_url, "SELECT count(*) FROM runs_daily WHERE start_day < :d", d=TODAY - 3)[
            0
        ][0]
        == 0
    )
    roll_up(database_url)
    rolled = execute(database_url, "SELECT runs FROM rolled_days WHERE start_day = :d", d=TODAY - 3)
    left = execute(
        database_url,
        "SELECT count(*) FROM runs WHERE start_day = :d",
        d=TODAY - 3,
    )
    assert rolled[0][0] == left[0][0]


def test_the_writer_rolls_up_closed_days_between_its_batches(database_url: str) -> None:
    write(database_url, history(days=2, per_day=5))
    clock = [0.0]
    upkeep = Upkeep(monotonic=lambda: clock[0], time_ns=lambda: NOW)
    exporter = SqlSpanExporter(database_url)
    try:
        # Between batches a minute apart, half a second a visit: the hours first, then the days.
        for _ in range(100):
            upkeep.visit_if_due(exporter.engine)
            if execute(database_url, "SELECT count(*) FROM rolled_days WHERE runs > 0") == [(2,)]:
                break
            clock[0] += 60.0
    finally:
        exporter.shutdown()
    days = execute(database_url, _ROLLED_DAYS.format("start_day, runs"), d=TODAY)
    assert [day for day, _ in days] == [TODAY - 2, TODAY - 1]
    assert all(runs == 15 for _, runs in days), days


def test_catching_up_the_writer_rests_four_times_as_long_as_each_visit_took(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A history stored before the rollups is rolled up a period a visit (here), and never
    for more than a fifth of the writer's time."""
    write(database_url, history(days=3, per_day=5))
    # Stored before the rollups existed: no period is marked (late writes would mark them).
    for rolled_table in ("rolled_slices", "rolled_hours", "rolled_days"):
        execute(database_url, f"DELETE FROM {rolled_table}")
    monkeypatch.setattr("runspan.storage.rollups._VISIT_SECONDS", 0.0)
    clock = [100.0]

    def monotonic() -> float:
        clock[0] += 1.5  # each reading: a visit takes 1.5 s
        return clock[0]

    upkeep = Upkeep(monotonic=monotonic, time_ns=lambda: NOW)
    rolled = "SELECT count(*) FROM rolled_days WHERE runs IS NOT NULL"
    hours_rolled = "SELECT count(*) FROM rolled_hours WHERE runs IS NOT NULL"
    slices_rolled = "SELECT count(*) FROM rolled_slices WHERE runs IS NOT NULL"  # slices first
    exporter = SqlSpanExporter(database_url)
    try:
        upkeep.visit_if_due(exporter.engine)  # at 101.5, done at 103: rests until 109
        assert execute(database_url, slices_rolled) == [(1,)]
        clock[0] = 105.0
        upkeep.visit_if_due(exporter.engine)  # at 106.5: resting
        assert execute(database_url, slices_rolled) == [(1,)]
        clock[0] = 108.0
        upkeep.visit_if_due(exporter.engine)  # at 109.5
        assert execute(database_url, slices_rolled) == [(2,)]
    finally:
        exporter.shutdown()
    # Visit after visit, a period each, every closed day and hour gets rolled up.
    engine = create_engine(database_url)
    rollups, visits = Rollups(), 0
    while not rollups.visit(engine, NOW):
        visits += 1
    engine.dispose()
    closed = (
        "SELECT count(DISTINCT start_ns / :length) FROM runs"
        " WHERE start_ns >= :kept AND start_ns < :closed"
    )
    newest_hour = execute(database_url, "SELECT max(start_hour) FROM rolled_hours")[0][0]
    # A day of slices is kept, and rolled up: the hours hold the rest.
    kept = max(SLICE.of(NOW - DAY_NS), SLICE.of(newest_hour * HOUR_NS - DAY_NS)) * SLICE.length_ns
    for period, query, since in ((HOUR, hours_rolled, 0), (SLICE, slices_rolled, kept)):
        length = period.length_ns
        ended = period.first_open(NOW) * length
        assert execute(database_url, query) == execute(
            database_url, closed, length=length, kept=since, closed=ended
        )
    assert execute(database_url, rolled) == [(3,)]
    assert visits >= execute(database_url, hours_rolled)[0][0]  # one period a visit


def test_a_day_is_rolled_up_only_once_it_has_been_over_for_two_hours(database_url: str) -> None:
    write(database_url, history(days=1, per_day=5))
    just_after = (TODAY) * DAY_NS + HOUR_NS  # yesterday ended an hour ago
    roll_up(database_url, now_ns=just_after)
    rolled = "SELECT start_day FROM rolled_days WHERE runs IS NOT NULL"
    assert execute(database_url, rolled) == []
    roll_up(database_url, now_ns=just_after + 2 * HOUR_NS)
    assert execute(database_url, rolled) == [(TODAY - 1,)]


def test_an_hour_is_rolled_up_ten_minutes_after_it_ends(database_url: str) -> None:
    """So that reads count from runs only the open hour and a few minutes: at hundreds of runs
    a second, every hour they count is a million runs."""
    hour = (TODAY - 1) * 24 + 10
    write(database_url, trace(hour * HOUR_NS + 10**9, random.Random(4)))
    rolled = "SELECT start_hour FROM rolled_hours WHERE runs IS NOT NULL"
    minute = 60 * 10**9
    roll_up(database_url, now_ns=(hour + 1) * HOUR_NS + 9 * minute)
    assert execute(database_url, rolled) == []
    roll_up(database_url, now_ns=(hour + 1) * HOUR_NS + 10 * minute)
    assert execute(database_url, rolled) == [(hour,)]
    # Its day waits two hours after it ends: its hours serve it meanwhile.
    assert execute(database_url, "SELECT 1 FROM rolled_days WHERE runs IS NOT NULL") == []


@pytest.mark.parametrize(
    ("period", "late_minutes", "longer"),
    [(SLICE, 2, "rolled_hours"), (HOUR, 5, "rolled_days")],
    ids=["slice", "hour"],
)
def test_a_run_late_for_its_period_marks_that_period_stale_and_not_the_longer_one(
    database_url: str, period: Period, late_minutes: int, longer: str
) -> None:
    hour = (TODAY - 1) * 24 + 10
    rows = trace(hour * HOUR_NS + 10**9, random.Random(4))
    SqlSpanExporter(database_url).shutdown()  # the schema; the marks are the test's alone
    stale = f"SELECT {period.column} FROM {period.rolled.name} WHERE stale IS NOT NULL"
    number = period.of(hour * HOUR_NS)
    late = (number + 1) * period.length_ns + late_minutes * 60 * 10**9
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            mark_late(connection, rows, late - 1)
        assert execute(database_url, stale) == []  # not late yet: the rollup will count it
        with engine.begin() as connection:
            mark_late(connection, rows, late)
        assert execute(database_url, stale) == [(number,)]
        # The longer period it is in has not ended that long ago: it is not late for it.
        assert execute(database_url, f"SELECT 1 FROM {longer}") == []
    finally:
        engine.dispose()


def test_an_hour_stale_again_right_after_its_rollup_is_read_from_runs_until_it_rests(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long runs ending one after another mark their hour stale again and again: it is rolled
    up again once a minute at most, and every read counts it exactly meanwhile."""
    newest_closed = HOUR.first_open(NOW) - 1
    write(database_url, history(days=1, per_day=10))
    write(database_url, trace(newest_closed * HOUR_NS + 10**9, random.Random(7)))
    clock = [1000.0]
    rollups, engine = Rollups(monotonic=lambda: clock[0]), create_engine(database_url)
    try:
        while not rollups.visit(engine, NOW):
            pass
        with RunStore(read_url) as store:
            assert newest_closed in served(store._fetch, HOUR, None, None)
        late = trace(newest_closed * HOUR_NS + 2 * 10**9, random.Random(8), tool_fails=True)
        with engine.begin() as connection:
            write_rows(connection, late)  # written now, ten minutes at least after the hour
        stale = "SELECT stale FROM rolled_hours WHERE start_hour = :h"
        clock[0] += 59.0
        assert rollups.visit(engine, NOW)
        assert execute(database_url, stale, h=newest_closed)[0][0] is not None  # resting
        with RunStore(read_url) as store:
            assert newest_closed not in served(store._fetch, HOUR, None, None)
            assert_same(store.stats("name"), _counted(store, monkeypatch, "name"))
            errors = {stat.key: stat.errors for stat in store.stats("name")}
        clock[0] += 1.0
        assert rollups.visit(engine, NOW)
        assert execute(database_url, stale, h=newest_closed) == [(None,)]
        with RunStore(read_url) as store:
            assert newest_closed in served(store._fetch, HOUR, None, None)
            assert {stat.key: stat.errors for stat in store.stats("name")} == errors
    finally:
        engine.dispose()


def _rollups_of(url: str, period: Period) -> dict[str, Any]:
    """``period``'s rollups, in an order of their own (floats compared approximately)."""
    tables = {}
    for table in (period.table.name, period.by_trace.name):
        rows = execute(url, f"SELECT * FROM {table}")
        dicts = [dict(row._mapping) for row in rows]
        for row in dicts:
            if row.get("durations") is not None and isinstance(row["durations"], str):
                row["durations"] = json.loads(row["durations"])
        # By every column but the floats, which may differ in their last digits.
        tables[table] = sorted(
            dicts,
            key=lambda row: repr([v for v in row.values() if not isinstance(v, float | dict)]),
        )
        for row in tables[table]:
            for name in ("duration_ms_sum", "ttft_ms_sum"):
                if row[name] is not None:
                    row[name] = pytest.approx(row[name], rel=1e-9)
    tags, rolled = period.tags.name, period.rolled.name
    tables[tags] = execute(url, f"SELECT * FROM {tags} ORDER BY 1, 2")
    tables[rolled] = execute(url, f"SELECT {period.column}, runs, tags FROM {rolled} ORDER BY 1")
    return tables


@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "more-tags-than-kept"])
def test_a_day_summed_from_its_hours_is_the_day_counted_from_its_runs(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tagged: bool
) -> None:
    """A busy day is tens of millions of runs, its hours a few thousand rollup rows: a day whose
    hours are all rolled up is summed from them, to the same rows."""
    rows = history(days=3, per_day=30)
    if tagged:
        # A period keeps one tag. Three days ago, one tag an hour and two a day; the day before
        # yesterday, one tag (and a run without); yesterday, one tag but two in one hour.
        for row in rows:
            day = row["start_ns"] // DAY_NS
            tag = f"odd:{row['start_ns'] // HOUR_NS % 2}" if day == TODAY - 3 else "same"
            row["tags"] = json.dumps([tag, 7, ["nested"]])  # neither of the others is a tag
        for back, tags in ((2, None), (1, json.dumps(["same", "extra"]))):
            min((r for r in rows if r["start_ns"] // DAY_NS == TODAY - back), key=repr)["tags"] = (
                tags
            )
        monkeypatch.setattr("runspan.storage.rollups.MAX_TAGS", 1)
    write(database_url, rows)
    summed = _summing(monkeypatch, DAY)
    roll_up(database_url)
    assert sorted(summed) == [(TODAY - back, True) for back in range(3, 0, -1)]
    from_hours = _rollups_of(database_url, DAY)
    if tagged:
        assert [tags for _, _, tags in from_hours["rolled_days"]] == [-1, 1, -1]

    monkeypatch.setattr("runspan.storage.rollups._from_parts", lambda *_: None)
    execute(database_url, "UPDATE rolled_days SET stale = 'again'")
    roll_up(database_url)
    assert _rollups_of(database_url, DAY) == from_hours


def test_a_day_with_an_hour_not_rolled_up_as_it_stands_is_counted_from_its_runs(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(database_url, history(days=2, per_day=30))
    roll_up(database_url)
    day = TODAY - 1
    hour = execute(
        database_url,
        "SELECT min(start_hour) FROM rolled_hours WHERE start_hour >= :h AND runs > 0",
        h=day * 24,
    )[0][0]
    engine = create_engine(database_url)
    with engine.begin() as connection:
        assert rollups_module._from_parts(connection, DAY, day) is not None
        # An hour made stale, and one never rolled up (as after an upgrade): neither will do.
        connection.execute(
            text("UPDATE rolled_hours SET stale = 'x' WHERE start_hour = :h"), {"h": hour}
        )
        assert rollups_module._from_parts(connection, DAY, day) is None
        connection.execute(text("DELETE FROM rolled_hours WHERE start_hour = :h"), {"h": hour})
        assert rollups_module._from_parts(connection, DAY, day) is None
    engine.dispose()
    execute(database_url, "UPDATE rolled_days SET stale = 'again'")
    engine = create_engine(database_url)
    try:
        assert roll_up_one(engine, DAY, day, NOW)
    finally:
        engine.dispose()
    with RunStore(read_url) as store:
        assert day in served(store._fetch, DAY, None, None)
        assert_same(store.stats("name"), _counted(store, monkeypatch, "name"))


MINUTE_NS = 60 * 10**9


def _busy_hour(hour: int) -> list[dict[str, Any]]:
    """A trace every two minutes through ``hour``'s first 35 minutes, tagged by its slice."""
    rng = random.Random(12)
    rows = []
    for minute in range(0, 35, 2):
        start = hour * HOUR_NS + minute * MINUTE_NS + 10**9
        for row in trace(start, rng, tool_fails=minute % 6 == 0):
            row["tags"] = json.dumps(["busy", f"slice:{minute // 10}"])
            rows.append(row)
    return rows


def _summing(monkeypatch: pytest.MonkeyPatch, period: Period) -> list[tuple[int, bool]]:
    """Which periods of ``period`` the writer tries to sum from their parts, and whether it can."""
    summed: list[tuple[int, bool]] = []
    real = rollups_module._from_parts

    def recorded(connection: Any, rolled: Period, number: int) -> Any:
        found = real(connection, rolled, number)
        if rolled is period:
            summed.append((number, found is not None))
        return found

    monkeypatch.setattr("runspan.storage.rollups._from_parts", recorded)
    return summed


def test_the_closed_slices_of_the_open_hour_serve_reads_as_counting_every_run_does(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At hundreds of runs a second, an hour is a million runs: its ten-minute slices are rolled
    up four minutes after each ends, so that reads count only minutes from runs, and the hour is
    summed from them. A run late for a slice marks it stale: reads count it from runs."""
    hour = (TODAY - 1) * 24 + 10
    write(database_url, history(days=2, per_day=30) + _busy_hour(hour))
    slices = [hour * 6, hour * 6 + 1, hour * 6 + 2]  # 10:00 to 10:30, the last closed at 10:34

    def same_as_every_run() -> None:
        with RunStore(read_url) as store:
            assert_daily_view_counts_every_run(store)
            for by in ("name", "model", "day"):
                assert_same(store.stats(by), _counted(store, monkeypatch, by))  # type: ignore[arg-type]

    roll_up(database_url, now_ns=hour * HOUR_NS + 34 * MINUTE_NS - 1)
    rolled = "SELECT max(start_slice) FROM rolled_slices WHERE runs IS NOT NULL"
    assert execute(database_url, rolled) == [(slices[1],)]
    roll_up(database_url, now_ns=hour * HOUR_NS + 34 * MINUTE_NS)
    with RunStore(read_url) as store:
        assert served(store._fetch, SLICE, hour * HOUR_NS, None) == slices
        assert hour not in served(store._fetch, HOUR, None, None)
    read: list[Period] = []
    add_rollups = rollup_stats_module._add_rollups

    def reading(fetch: Any, by: str, **chosen: Any) -> None:
        read.append(chosen["period"])
        add_rollups(fetch, by, **chosen)

    with monkeypatch.context() as patched:
        patched.setattr("runspan.storage.rollup_stats._add_rollups", reading)
        same_as_every_run()
    assert SLICE in read  # stats read the slices, not their runs
    # Late for the second slice (and its hour and day): read from runs until rolled up again.
    late = trace(hour * HOUR_NS + 15 * MINUTE_NS, random.Random(13), tool_fails=True)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        write_rows(connection, late)
    engine.dispose()
    with RunStore(read_url) as store:
        assert served(store._fetch, SLICE, hour * HOUR_NS, None) == [slices[0], slices[2]]
    same_as_every_run()
    summed = _summing(monkeypatch, HOUR)
    roll_up(database_url, now_ns=(hour + 1) * HOUR_NS + 10 * MINUTE_NS)
    assert (hour, True) in summed  # the stale slice first, then the hour from its slices
    with RunStore(read_url) as store:
        assert hour in served(store._fetch, HOUR, None, None)
    same_as_every_run()


_SLICE_TABLES = ("runs_slices", "runs_slices_traces", "runs_slices_tags", "rolled_slices")


def test_after_revision_0017_only_the_slices_no_hour_holds_are_rolled_up(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A history rolled up before the slices existed is not counted again into slices no read
    uses: only those after the newest hour rolled up are."""
    rows = history(days=2, per_day=30) + trace(NOW - 60 * 10**9, random.Random(8))
    write(database_url, rows)
    roll_up(database_url)
    for table in _SLICE_TABLES:  # as revision 0017 finds a history rolled up
        execute(database_url, f"DELETE FROM {table}")
    roll_up(database_url)
    newest_hour = execute(database_url, "SELECT max(start_hour) FROM rolled_hours WHERE runs > 0")
    slices = execute(database_url, "SELECT start_slice FROM rolled_slices WHERE runs IS NOT NULL")
    assert all(number >= (newest_hour[0][0] + 1) * 6 for (number,) in slices), slices
    with RunStore(read_url) as store:
        assert_daily_view_counts_every_run(store)
        assert_same(store.stats("name"), _counted(store, monkeypatch, "name"))


def test_a_history_stored_before_the_rollups_is_rolled_into_a_day_of_slices_only(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older slices would be dropped as soon as made: their hours are counted from runs. Also
    those marked stale: the history written now is late for every slice of it."""
    write(database_url, history(days=3, per_day=30))
    assert execute(database_url, "SELECT count(*) FROM rolled_slices WHERE stale IS NOT NULL")[0][0]
    for table in ("rolled_hours", "rolled_days"):  # as before revision 0010
        execute(database_url, f"DELETE FROM {table}")
    rolled: list[tuple[str, int]] = []
    real = rollups_module.roll_up

    def recorded(engine: Any, period: Period, number: int, now_ns: int) -> bool:
        rolled.append((period.column, number))
        return real(engine, period, number, now_ns)

    monkeypatch.setattr("runspan.storage.rollups.roll_up", recorded)
    roll_up(database_url)
    slices = [number for column, number in rolled if column == "start_slice"]
    assert slices
    assert min(slices) >= SLICE.of(NOW - DAY_NS)
    assert ("start_day", TODAY - 3) in rolled
    with RunStore(read_url) as store:
        assert_daily_view_counts_every_run(store)
        assert_same(store.stats("name"), _counted(store, monkeypatch, "name"))


def test_the_hours_of_a_day_rolled_up_before_them_are_still_rolled_up(
    database_url: str,
) -> None:
    """A day counted from its runs before its hours (a stored history caught up) keeps its
    hours coming: reads use them at the edges of a period, and rare filters to narrow a day."""
    write(database_url, history(days=3, per_day=30))
    for table in ("rolled_slices", "rolled_hours", "rolled_days"):  # as before revision 0010
        execute(database_url, f"DELETE FROM {table}")
    engine = create_engine(database_url)
    try:
        assert roll_up_one(engine, DAY, TODAY - 1, NOW)
    finally:
        engine.dispose()
    roll_up(database_url)
    hours = "SELECT count(*) FROM rolled_hours WHERE runs > 0 AND start_hour / 24 = :d"
    assert execute(database_url, hours, d=TODAY - 3)[0][0] > 0


def test_an_hour_summed_from_its_slices_is_the_hour_counted_from_its_runs(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hour = HOUR.first_open(NOW) - 2  # closed, and its slices within the day kept
    write(database_url, history(days=1, per_day=40) + _busy_hour(hour))
    summed = _summing(monkeypatch, HOUR)
    roll_up(database_url)
    assert (hour, True) in summed
    # Every hour whose slices are kept is summed from them; older ones are counted from runs
    # (the hour across the bound is either, as its runs fall).
    first_kept = SLICE.of(NOW - DAY_NS)
    assert all(found for number, found in summed if number * 6 >= first_kept), summed
    assert not any(found for number, found in summed if (number + 1) * 6 <= first_kept)
    from_slices = _rollups_of(database_url, HOUR)
    assert ("busy",) in [row[1:] for row in from_slices["runs_hourly_tags"]]
    monkeypatch.setattr("runspan.storage.rollups._from_parts", lambda *_: None)
    execute(database_url, "UPDATE rolled_hours SET stale = 'again'")
    roll_up(database_url)
    assert _rollups_of(database_url, HOUR) == from_slices


def test_stats_on_the_command_line_read_the_rollups(database_url: str, read_url: str) -> None:
    write(database_url, history(days=4, per_day=30))
    with RunStore(read_url) as store:
        exact = store.stats("name", RunFilter(skip_types=("prompt", "parser")))
    roll_up(database_url)
    shown = runspan_cli(read_url, "stats", "--json")
    assert shown.returncode == 0, shown.stderr
    got = json.loads(shown.stdout)
    assert [(stat["key"], stat["runs"], stat["errors"]) for stat in got] == [
        (stat.key, stat.runs, stat.errors) for stat in exact
    ]
    assert [stat["p95_ms"] for stat in got] == pytest.approx(
        [stat.p95_ms for stat in exact], rel=0.005
    )


def test_rollups_price_runs_as_the_views_do() -> None:
    revision = importlib.import_module("runspan.storage.migrations.versions.0007_price_origins")
    assert revision._PRICE_JOIN == PRICE_JOIN


def histogram_of(durations: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for duration in durations:
        counts[bucket(duration)] = counts.get(bucket(duration), 0) + 1
    return counts


def test_percentiles_from_the_histogram_are_within_half_a_percent() -> None:
    rng = random.Random(5)
    for size in (1, 2, 7, 100, 5000):
        values = sorted(rng.lognormvariate(4.0, 2.0) for _ in range(size))
        counts = histogram_of(values)
        for p in (1, 50, 95, 99, 100):
            exact = values[max(1, math.ceil(p * size / 100)) - 1]
            got = percentile(counts, p, values[0], values[-1])
            assert got == pytest.approx(exact, rel=0.005), (size, p)
    assert percentile({}, 50, 0.0, 0.0) is None
    zero = histogram_of([0.0, 0.0, 3.0])
    assert percentile(zero, 50, 0.0, 3.0) == pytest.approx(0.0, abs=0.001)


def test_the_database_buckets_durations_as_python_does(database_url: str) -> None:
    SqlSpanExporter(database_url).shutdown()
    engine = create_engine(database_url)
    values = [0.0, 0.0004, 0.001, 0.5, 1.0, 1.01, 2.5, 123.456, 86_400_000.0]
    try:
        with engine.connect() as connection:
            for value in values:
                query = select(duration_bucket(literal(value, Float())))
                assert connection.execute(query).scalar() == bucket(value), value
            assert connection.execute(select(duration_bucket(null()))).scalar() is None
    finally:
        engine.dispose()


def _documented(heading: str, dialect: str = "") -> str:
    """The SQL under ``### heading`` in docs/queries.md (the first block of the page for an
    empty heading), in ``dialect``'s variant where there is one."""
    page = (Path(__file__).parents[2] / "docs" / "queries.md").read_text()
    section = page[page.index(f"### {heading}") :] if heading else page
    blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    chosen = next(b for b in blocks if not b.startswith("-- ") or b.startswith(f"-- {dialect}"))
    return chosen.strip().rstrip(";")


_ERRORS = "sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END)"
# Each documented query that reads the rollups, and the same question asked of every run.
_EVERY_RUN = {
    "": "SELECT model_name, day, sum(input_tokens), sum(output_tokens) FROM llm_calls"
    " GROUP BY 1, 2",
    "4. Error rate per chain per day": f"SELECT day, name, count(*), {_ERRORS},"
    f" round(CAST(100.0 * {_ERRORS} / count(*) AS NUMERIC), 1) FROM runs_v"
    " WHERE run_id IS NOT NULL AND parent_run_id IS NULL GROUP BY day, name",
    "5. Tokens and cost per model per day": "SELECT model_name, day, count(*),"
    " sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM llm_calls"
    " GROUP BY model_name, day",
    "9. The most common errors": "SELECT error_type, name, count(*), max(start_time),"
    " min(error_message) FROM runs_v WHERE status = 'error' GROUP BY error_type, name",
    "10. What each tool costs": "SELECT name, count(*),"
    f" round(CAST(avg(duration_ms) AS NUMERIC), 2), {_ERRORS} FROM runs"
    " WHERE run_type = 'tool' GROUP BY name",
    "11. Time to first token": "SELECT model_name, count(*),"
    " round(CAST(avg(ttft_ms) AS NUMERIC), 2), max(ttft_ms) FROM llm_calls"
    " WHERE ttft_ms IS NOT NULL GROUP BY model_name",
    "13. Which model calls each chain makes": "SELECT t.name, c.model_name, count(*),"
    " sum(c.total_tokens), sum(c.cost_usd) FROM llm_calls c JOIN traces t"
    " ON t.trace_id = c.trace_id GROUP BY t.name, c.model_name",
    "17. Nodes that needed retries": "SELECT name, sum(CASE WHEN status = 'retried' THEN 1"
    f" ELSE 0 END), {_ERRORS}, max(coalesce(attempt, 1)) FROM runs WHERE langgraph_node = name"
    " GROUP BY name HAVING sum(CASE WHEN status = 'retried' THEN 1 ELSE 0 END) > 0",
    "18. Runs that did not finish": "SELECT unfinished_reason, name, count(*), max(start_time)"
    " FROM runs_v WHERE status = 'unfinished' GROUP BY unfinished_reason, name",
}
_P95 = """WITH ranked AS (
    SELECT name, duration_ms, row_number() OVER (PARTITION BY name ORDER BY duration_ms) AS n,
           count(*) OVER (PARTITION BY name) AS total
    FROM runs WHERE run_type = 'tool' AND duration_ms IS NOT NULL)
SELECT name, max(total), min(duration_ms) FROM ranked WHERE n * 100 >= 95 * total GROUP BY name"""


def test_the_documented_queries_over_rollups_answer_as_every_run_does(
    database_url: str, read_url: str
) -> None:
    rows = history(days=3, per_day=40)
    for row in rows:  # LangGraph nodes of their own name, some retried
        if row["run_type"] == "tool":
            row["langgraph_node"] = row["name"] = random.choice(["search", "fetch"])
            if row["status"] == "ok" and row["attempt"]:
                row["status"] = "retried"
    write(database_url, rows)
    with RunStore(read_url) as store:
        _answers_as_every_run(store)  # nothing rolled up yet
    roll_up(database_url)
    with RunStore(read_url) as store:
        assert served(store._fetch, DAY, None, None)  # the rollups are read
        _answers_as_every_run(store)


def _answers_as_every_run(store: RunStore) -> None:
    dialect = store.engine.dialect.name
    for heading, every_run in _EVERY_RUN.items():
        documented = _daily_rows(store, _documented(heading))
        assert documented, heading
        assert_same_rows(documented, _daily_rows(store, every_run))
    p95 = _daily_rows(store, _documented("6. p95 latency per tool", dialect))
    exact = _daily_rows(store, _P95)
    assert [row[:2] for row in p95] == [row[:2] for row in exact]
    for got, truth in zip(p95, exact, strict=True):
        assert got[2] == pytest.approx(truth[2], rel=0.0051)


_GROUPED = (
    "start_day, day, service_name, name, run_type, status, unfinished_reason, error_type,"
    " model_name, langgraph_node, trace_name"
)
# runs_v with each run's trace name (its root's).
_NAMED = (
    "(SELECT v.*, t.name AS trace_name FROM runs_v v LEFT JOIN traces t"
    " ON t.trace_id = v.trace_id) AS named"
)
# runs_daily_v's columns: how its rows of a day and group (from the rollups of the day or of its
# hours, and from runs) add up, and what counting every run of runs_v gives.
_DAILY = {
    "runs": ("sum", "count(*)"),
    "finished": ("sum", "count(duration_ms)"),
    "duration_ms_sum": ("sum", "sum(duration_ms)"),
    "duration_ms_min": ("min", "min(duration_ms)"),
    "duration_ms_max": ("max", "max(duration_ms)"),
    "input_tokens": ("sum", "sum(input_tokens)"),
    "output_tokens": ("sum", "sum(output_tokens)"),
    "total_tokens": ("sum", "sum(total_tokens)"),
    "cost_usd": ("sum", "sum(cost_usd)"),
    "ttft_count": ("sum", "count(ttft_ms)"),
    "ttft_ms_sum": ("sum", "sum(ttft_ms)"),
    "ttft_ms_max": ("max", "max(ttft_ms)"),
    "attempt_max": ("max", "max(attempt)"),
    "last_start_ns": ("max", "max(start_ns)"),
    "last_time": ("max", "max(start_time)"),
    "error_example": ("min", "min(error_message)"),
}


def _daily_rows(store: RunStore, sql: str) -> list[tuple[Any, ...]]:
    """Rows sorted, numbers as floats (PostgreSQL sums bigints as numeric)."""
    rows = [
        tuple(float(v) if isinstance(v, (int, float, Decimal)) else v for v in row)
        for row in store.sql(sql).rows
    ]
    return sorted(rows, key=repr)


def assert_daily_view_counts_every_run(store: RunStore) -> None:
    added = ", ".join(f"{merge}({name})" for name, (merge, _) in _DAILY.items())
    viewed_root = "CASE WHEN is_root THEN 1 ELSE 0 END"
    viewed = _daily_rows(
        store,
        f"SELECT {_GROUPED}, {viewed_root}, {added} FROM runs_daily_v"
        f" GROUP BY {_GROUPED}, {viewed_root}",
    )
    root = "CASE WHEN run_id IS NOT NULL AND parent_run_id IS NULL THEN 1 ELSE 0 END"
    counted = _daily_rows(
        store,
        f"SELECT {_GROUPED}, {root}, {', '.join(exact for _, exact in _DAILY.values())}"
        f" FROM {_NAMED} GROUP BY {_GROUPED}, {root}",
    )
    assert_same_rows(viewed, counted)


def assert_same_rows(rows: list[tuple[Any, ...]], exact: list[tuple[Any, ...]]) -> None:
    """The same rows, numbers to nine digits (sums in another order round otherwise)."""
    assert len(rows) == len(exact)
    for got, row in zip(rows, exact, strict=True):
        for value, truth in zip(got, row, strict=True):
            if isinstance(truth, float):
                assert value == pytest.approx(truth, rel=1e-9), (got, row)
            else:
                assert value == truth, (got, row)


def test_the_daily_view_is_what_counting_every_run_gives_whatever_is_rolled_up(
    database_url: str, read_url: str
) -> None:
    rows = history(days=3, per_day=30)
    write(database_url, rows)
    price_from_noon(database_url, TODAY - 2)
    assert any(row["error_type"] for row in rows)
    assert any(row["ttft_ms"] for row in rows)
    with RunStore(read_url) as store:
        assert_daily_view_counts_every_run(store)  # nothing rolled up: every day from runs
    yesterday = (TODAY - 1) * DAY_NS
    roll_up(database_url, now_ns=yesterday + 5 * HOUR_NS)  # the days before, yesterday's 3 hours
    with RunStore(read_url) as store:
        assert served(store._fetch, DAY, None, None) == [TODAY - 3]  # not the noon's
        hours = served(store._fetch, HOUR, yesterday, None)
        assert 1 <= len(hours) <= 3  # those of yesterday's first 3 hours that had runs
        assert all(hour < (TODAY - 1) * 24 + 3 for hour in hours)
        assert_daily_view_counts_every_run(store)
    write_late_runs(database_url)
    with RunStore(read_url) as store:
        assert (TODAY - 1) * 24 + 1 not in served(store._fetch, HOUR, yesterday, None)
        assert TODAY - 3 not in served(store._fetch, DAY, None, None)
        assert_daily_view_counts_every_run(store)
    roll_up(database_url)
    with RunStore(read_url) as store:
        assert served(store._fetch, DAY, None, None) == [TODAY - 3, TODAY - 1]
        assert_daily_view_counts_every_run(store)


def test_the_daily_view_answers_the_same_before_and_after_revisions_0016_and_0017(
    database_url: str,
) -> None:
    """Revision 0016 moves the stretches runs_daily_v counts from runs into a function on
    PostgreSQL, and 0017 reads ten-minute slices: the view's rows, summed per group, are what
    they were, with a stale day and hour and a day in which a price took effect among them."""
    write(database_url, history(days=3, per_day=30) + trace(NOW - 60 * 10**9, random.Random(8)))
    roll_up(database_url)
    write_late_runs(database_url)  # a stale day and a stale hour
    price_from_noon(database_url, TODAY - 2)
    read = (
        f"SELECT {_GROUPED}, is_root, sum(runs), sum(duration_ms_sum), sum(cost_usd),"
        f" max(last_time) FROM runs_daily_v GROUP BY {_GROUPED}, is_root"
    )

    def daily() -> list[tuple[Any, ...]]:  # not through RunStore: it reads only the head
        rows = execute(database_url, read)
        return sorted(
            (tuple(float(v) if isinstance(v, Decimal | int) else v for v in row) for row in rows),
            key=repr,
        )

    stale = "SELECT count(*) FROM rolled_days WHERE stale IS NOT NULL"
    assert execute(database_url, stale)[0][0]  # a stretch the view counts from runs
    if database_url.startswith("postgresql"):  # and there, the function counts it
        assert execute(database_url, "SELECT count(*) FROM runspan_daily_counted()")[0][0]
    after = daily()
    migrate_down(database_url, "0015")
    before = daily()
    upgrade_database(database_url)
    assert_same_rows(daily(), before)
    assert_same_rows(after, before)


def _assert_narrowed_as_every_run(
    read_url: str,
    monkeypatch: pytest.MonkeyPatch,
    filters: list[RunFilter],
    limits: tuple[int, ...],
) -> list[list[Any]]:
    """Each filter, at each limit, lists through the rollups what reading every run newest
    first lists; returns the lists, filter by filter and limit by limit."""
    with RunStore(read_url) as store:
        cases = [(where, limit) for where in filters for limit in limits]
        assert all(newest_runs(store._fetch, where, 1) is not None for where in filters)
        narrowed = [store.runs(where, limit=limit) for where, limit in cases]
        with monkeypatch.context() as patched:
            patched.setattr("runspan.storage.queries.newest_runs", lambda *_: None)
            for (where, limit), got in zip(cases, narrowed, strict=True):
                assert got == store.runs(where, limit=limit), (where, limit)
    return narrowed


def test_the_newest_runs_of_a_rare_filter_are_read_where_the_rollups_allow_a_match(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runspan runs --status ...` and the like (filters few runs match) read only the hours
    that the rollups say can hold a match, and list what reading every run newest first lists:
    with nothing rolled up, part of it, a late run in a rolled hour and in a rolled day, and
    all of it. A filter nothing matches reads only the hours not rolled up yet."""
    # A trace a minute old: what is not rolled up yet has runs, whatever the time of day.
    rows = history(days=3, per_day=30) + trace(NOW - 60 * 10**9, random.Random(8))
    write(database_url, rows)
    yesterday = (TODAY - 1) * DAY_NS
    filters = [
        RunFilter(status="error"),
        RunFilter(status="unfinished", unfinished_reason="cancelled"),
        RunFilter(node="act", status="error"),
        RunFilter(model="gpt-4o", run_type="llm"),
        RunFilter(run_type="tool", since=yesterday - 7 * HOUR_NS, until=yesterday + 9 * HOUR_NS),
        RunFilter(status="interrupted"),  # none
        RunFilter(status="error", skip_types=("tool",), roots_only=True),
    ]

    def same_as_every_run() -> None:
        _assert_narrowed_as_every_run(read_url, monkeypatch, filters, (1, 4, 500))

    same_as_every_run()
    roll_up(database_url, now_ns=yesterday + 5 * HOUR_NS)  # the days before, yesterday's 3 hours
    same_as_every_run()
    write_late_runs(database_url)
    same_as_every_run()
    roll_up(database_url)
    same_as_every_run()
    with RunStore(read_url) as store:
        starts = [row["start_ns"] for row in rows]
        none = RunFilter(status="interrupted")
        read = list(stretches(store._fetch, none, min(starts), max(starts)))
    read_runs = [r for r in rows if any(low <= r["start_ns"] <= high for low, high in read)]
    assert read_runs, "the hours not rolled up yet are read"
    assert all(r["start_ns"] >= UNROLLED_NS for r in read_runs)  # not the days before


def test_a_rare_filter_reads_only_the_slices_that_can_match_in_an_hour_not_rolled_up(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the open hour, the closed slices the rollups hold are skipped where no group matches
    (or no run carries the tag): at hundreds of runs a second, the open hour is a million runs
    to read for a filter nothing matches, its open slice a few minutes of them."""
    hour = (TODAY - 1) * 24 + 10
    write(database_url, history(days=2, per_day=30) + _busy_hour(hour))
    roll_up(database_url, now_ns=hour * HOUR_NS + 34 * MINUTE_NS)  # three slices, not the hour
    filters = [
        RunFilter(status="error"),
        RunFilter(node="act", status="error"),
        RunFilter(model="gpt-4o", run_type="llm"),
        RunFilter(tag="slice:1"),
        RunFilter(status="interrupted"),  # none
    ]
    _assert_narrowed_as_every_run(read_url, monkeypatch, filters, (1, 4, 500))
    unheld = (hour * 6 + 3) * SLICE.length_ns  # the first slice not rolled up
    with RunStore(read_url) as store:
        first, last = hour * HOUR_NS, unheld + SLICE.length_ns - 1
        none = list(stretches(store._fetch, RunFilter(status="interrupted"), first, last))
        assert none == [(unheld, last)]
        tagged = list(stretches(store._fetch, RunFilter(tag="slice:1"), first, last))
        assert tagged == [
            (unheld, last),
            ((hour * 6 + 1) * SLICE.length_ns, unheld - 1 - SLICE.length_ns),
        ]


def _tagged_history() -> list[dict[str, Any]]:
    """``history(days=3)`` with tags as LangChain gives them: each step of a sequence is
    ``seq:step:N``; the roots of the day before yesterday carry ``beta``; one run of yesterday
    carries an odd tag, a number and a nested list (neither of which is a tag to filter by)."""
    rows = history(days=3, per_day=30)
    for index, row in enumerate(rows):
        tags = [f"seq:step:{index % 3 + 1}"]
        if row["parent_run_id"] is None and row["start_ns"] // DAY_NS == TODAY - 2:
            tags.append("beta")
        row["tags"] = json.dumps(tags)
    odd = next(r for r in rows if r["start_ns"] // DAY_NS == TODAY - 1)
    odd["tags"] = json.dumps(['it\'s 100% "odd"', 7, ["nested"]])
    return rows


_TAG_FILTERS = [
    RunFilter(tag="beta"),
    RunFilter(tag=("beta", "seq:step:1")),
    RunFilter(tag="beta", status="error"),
    RunFilter(tag="seq:step:2", min_duration_ms=300.0),
    RunFilter(tag='it\'s 100% "odd"'),
    RunFilter(tag="7"),  # a number, not a tag: none
    RunFilter(tag='["nested"]'),  # none
    RunFilter(tag="no-such-tag"),  # none
]


def _assert_tag_filters_list_what_every_run_gives(
    read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    narrowed = _assert_narrowed_as_every_run(read_url, monkeypatch, _TAG_FILTERS, (2, 500))
    assert len(narrowed[_TAG_FILTERS.index(RunFilter(tag="beta")) * 2 + 1]) == 30


def _read_by_tag(read_url: str, tag: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that a filter by ``tag`` reads."""
    with RunStore(read_url) as store:
        starts = [row["start_ns"] for row in rows]
        read = list(stretches(store._fetch, RunFilter(tag=tag), min(starts), max(starts)))
    return [r for r in rows if any(low <= r["start_ns"] <= high for low, high in read)]


def test_a_tag_filter_reads_only_the_days_and_hours_whose_runs_carry_the_tag(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runspan runs --tag` lists what reading every run newest first lists, with nothing
    rolled up, part of it, late runs and all of it; then a tag nothing carries reads only the
    hours not rolled up yet, and a tag of one day reads that day and those hours."""
    rows = _tagged_history()
    write(database_url, rows)
    yesterday = (TODAY - 1) * DAY_NS
    _assert_tag_filters_list_what_every_run_gives(read_url, monkeypatch)
    roll_up(database_url, now_ns=yesterday + 5 * HOUR_NS)
    _assert_tag_filters_list_what_every_run_gives(read_url, monkeypatch)
    write_late_runs(database_url)
    _assert_tag_filters_list_what_every_run_gives(read_url, monkeypatch)
    roll_up(database_url)
    _assert_tag_filters_list_what_every_run_gives(read_url, monkeypatch)
    assert all(r["start_ns"] >= UNROLLED_NS for r in _read_by_tag(read_url, "no-such-tag", rows))
    beta = {r["start_ns"] // DAY_NS for r in _read_by_tag(read_url, "beta", rows)}
    assert beta - {NOW // DAY_NS, UNROLLED_NS // DAY_NS} == {TODAY - 2}
    shown = runspan_cli(read_url, "runs", "--tag", "beta", "--tag", "seq:step:1", "--json")
    assert shown.returncode == 0, shown.stderr
    carrying = [r for r in rows if all(t in json.loads(r["tags"]) for t in ("beta", "seq:step:1"))]
    assert len(carrying) == 30
    listed = sorted(carrying, key=lambda r: r["start_ns"], reverse=True)
    assert [run["run_id"] for run in json.loads(shown.stdout)] == [r["run_id"] for r in listed]


def test_periods_whose_tags_are_not_kept_are_read_then_rolled_up_with_them(
    database_url: str, read_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A period with more distinct tags than are kept, or rolled up before tags were (revision
    0014 undone and done again), cannot be ruled out by a tag: it is read. The writer's visits
    roll the second kind up again, after what is due."""
    rows = _tagged_history()
    write(database_url, rows)
    monkeypatch.setattr("runspan.storage.rollups.MAX_TAGS", 3)
    roll_up(database_url)
    monkeypatch.undo()
    kept = execute(database_url, _ROLLED_DAYS.format("start_day, tags"), d=TODAY)
    # Three steps; beta the day before yesterday and the odd tag yesterday make four.
    assert kept == [(TODAY - 3, 3), (TODAY - 2, -1), (TODAY - 1, -1)]
    _assert_tag_filters_list_what_every_run_gives(read_url, monkeypatch)
    read = {r["start_ns"] // DAY_NS for r in _read_by_tag(read_url, "no-such-tag", rows)}
    assert {TODAY - 2, TODAY - 1} <= read
    assert TODAY - 3 not in read

    migrate_down(database_url, "0013")
    upgrade_database(database_url)  # the rolled periods, without their tags
    assert execute(database_url, "SELECT count(*) FROM rolled_days WHERE tags IS NULL")[0][0] >= 3
    _assert_tag_filters_list_what_every_run_gives(read_url, monkeypatch)
    read = {r["start_ns"] // DAY_NS for r in _read_by_tag(read_url, "no-such-tag", rows)}
    assert {TODAY - 3, TODAY - 2, TODAY - 1} <= read
    roll_up(database_url)
    kept = execute(database_url, _ROLLED_DAYS.format("start_day, tags"), d=TODAY)
    assert kept == [(TODAY - 3, 3), (TODAY - 2, 4), (TODAY - 1, 4)]  # 7 and ["nested"] are not tags
    assert not execute(
        database_url, "SELECT 1 FROM rolled_days WHERE runs IS NOT NULL AND tags IS NULL"
    )
    assert not execute(
        database_url, "SELECT 1 FROM rolled_hours WHERE runs IS NOT NULL AND tags IS NULL"
    )
    _assert_tag_filters_list_what_every_run_gives(read_url, monkeypatch)
    read = _read_by_tag(read_url, "no-such-tag", rows)
    assert all(r["start_ns"] >= UNROLLED_NS for r in read)

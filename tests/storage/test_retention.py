"""Retention: PostgreSQL's runs partitioned by day and pruned by dropping days, SQLite pruned in
chunks, and the writer's retention_days; the migration that partitions an existing database."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, make_url, text

from runspan.storage import RunStore, SqlSpanExporter
from runspan.storage.engine import create_writer_engine, database_url_from
from runspan.storage.maintenance import prune, upgrade_database
from runspan.storage.migrate import upgrade
from runspan.storage.partitions import days_around, ensure_days, existing_days, partition_name
from runspan.storage.retention import RETENTION_DAYS_ENV, Upkeep, retention_days_from
from runspan.storage.rows import COLUMNS
from runspan.storage.schema import DAY_NS, runs
from runspan.storage.upsert import write_rows
from runspan.testing import capture_spans
from runspan.testing import postgres as postgres_server
from tests.storage.test_writer import fake_chat  # a real chat model run

NOW = time.time_ns()
TODAY = NOW // DAY_NS


def trace_rows(start_ns: int, runs: int = 3, span: int = 10**9) -> list[dict[str, Any]]:
    """A trace of ``runs`` runs, a root and its children, each starting ``span`` ns later."""
    root = uuid.uuid4()
    rows = []
    for index in range(runs):
        run_id = root if index == 0 else uuid.uuid4()
        row = dict.fromkeys(COLUMNS)
        row.update(
            run_id=str(run_id),
            parent_run_id=None if index == 0 else str(root),
            trace_id=root.hex,
            span_id=run_id.hex[:16],
            parent_span_id=None if index == 0 else root.hex[:16],
            service_name="svc",
            name="root" if index == 0 else f"step {index}",
            run_type="chain",
            span_kind="internal",
            status="ok",
            start_ns=start_ns + index * span,
            end_ns=start_ns + index * span + 1000,
            duration_ms=0.001,
            inputs='{"q": "hello"}',
            attributes="{}",
        )
        rows.append(row)
    return rows


def write(url: str, *traces: list[dict[str, Any]]) -> None:
    SqlSpanExporter(url).shutdown()  # the schema
    engine = create_engine(url)
    with engine.begin() as connection:
        write_rows(connection, [row for trace in traces for row in trace])
    engine.dispose()


def count(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def days(url: str) -> list[int]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return existing_days(connection)
    finally:
        engine.dispose()


def test_postgres_runs_are_partitioned_by_day_with_days_ahead(pg_url: str) -> None:
    """A new database has a partition a day around today, and each run goes to its day's;
    a run of a day with none (a clock far off) goes to runs_default, and is not refused."""
    long_ago = (TODAY - 4000) * DAY_NS
    write(pg_url, trace_rows(NOW - 60 * 10**9, runs=1), trace_rows(long_ago, runs=1))
    assert set(days_around(NOW)) <= set(days(pg_url))
    located = count(
        pg_url, f"SELECT count(*) FROM runs WHERE tableoid = '{partition_name(TODAY)}'::regclass"
    )
    assert located == 1
    assert count(pg_url, "SELECT count(*) FROM runs_default") == 1


def test_the_writer_makes_the_days_ahead(pg_url: str) -> None:
    write(pg_url, trace_rows(NOW, runs=1))
    engine = create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {partition_name(TODAY + 2)}"))
    engine.dispose()
    assert TODAY + 2 not in days(pg_url)
    with capture_spans() as capture:
        fake_chat().invoke("hi", config={"callbacks": [capture.handler]})
        spans = capture.spans
    exporter = SqlSpanExporter(pg_url)
    exporter.export(spans)
    exporter.shutdown()
    assert TODAY + 2 in days(pg_url)


def make_days(url: str, first: int, last: int) -> None:
    """Partitions for past days, as a writer running then would have made them."""
    SqlSpanExporter(url).shutdown()  # the schema
    engine = create_engine(url)
    with engine.begin() as connection:
        ensure_days(connection, range(first, last + 1))
    engine.dispose()


def test_prune_drops_whole_days_on_postgres_and_deletes_the_rest(pg_url: str) -> None:
    """Ten days of traces: prune keeps four and a half. The older days' partitions are gone
    (not emptied), a trace that began before the cutoff and went on past midnight goes whole,
    and every newer run stays."""
    make_days(pg_url, TODAY - 12, TODAY)
    traces = [trace_rows((TODAY - age) * DAY_NS + 3600 * 10**9) for age in range(1, 11)]
    # Begins 30 s before midnight 5 days ago: its last run is in the next day's partition.
    straddling = trace_rows((TODAY - 5) * DAY_NS - 30 * 10**9, runs=3, span=20 * 10**9)
    write(pg_url, *traces, straddling)
    pruned = prune(4.5 * 86_400, pg_url, now_ns=TODAY * DAY_NS)
    assert (pruned.traces, pruned.runs) == (7, 21)
    left = days(pg_url)
    assert min(left) == TODAY - 5  # the cutoff's day stays, partly pruned
    assert count(pg_url, "SELECT count(*) FROM traces") == 4
    assert count(pg_url, "SELECT count(*) FROM runs") == 12
    straddler = straddling[0]["trace_id"]
    assert count(pg_url, f"SELECT count(*) FROM runs WHERE trace_id = '{straddler}'") == 0


def test_sqlite_prune_deletes_in_chunks_and_gives_the_space_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    old = [trace_rows(NOW - 40 * DAY_NS + i * 10**6) for i in range(2500)]
    write(url, *old, trace_rows(NOW))
    files = [tmp_path / "runs.db", tmp_path / "runs.db-wal"]
    before = sum(path.stat().st_size for path in files if path.exists())
    pruned = prune(30 * 86_400, url, now_ns=NOW)
    assert (pruned.traces, pruned.runs) == (2500, 7500)  # three chunks of at most 1,000
    assert pruned.freed_bytes is not None
    assert pruned.freed_bytes > 100_000
    assert sum(path.stat().st_size for path in files if path.exists()) < before
    assert count(url, "SELECT count(*) FROM runs") == 3


def test_the_writer_applies_retention_days(database_url: str) -> None:
    """retention_days: the writer removes what is older, between its batches (both
    databases), and keeps what is newer."""
    write(database_url, trace_rows(NOW - 3 * DAY_NS), trace_rows(NOW - 2 * 3600 * 10**9))
    with capture_spans() as capture:
        fake_chat().invoke("hi", config={"callbacks": [capture.handler]})
        spans = capture.spans
    exporter = SqlSpanExporter(database_url, retention_days=1)
    exporter.export(spans)
    exporter.shutdown()
    assert count(database_url, "SELECT count(*) FROM traces") == 2
    assert count(database_url, "SELECT count(*) FROM runs") == 3 + len(spans)


def test_upkeep_visits_once_an_hour_and_again_soon_while_old_runs_are_left(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    write(url, *[trace_rows(NOW - 3 * DAY_NS + i) for i in range(25_000)])
    clock = [0.0]
    upkeep = Upkeep(1, monotonic=lambda: clock[0])
    engine = create_writer_engine(database_url_from(url))
    upkeep.visit_if_due(engine)  # 20 chunks of 1,000: 5,000 traces are left
    assert count(url, "SELECT count(*) FROM traces") == 5000
    upkeep.visit_if_due(engine)  # not due yet
    assert count(url, "SELECT count(*) FROM traces") == 5000
    clock[0] = 1.5
    upkeep.visit_if_due(engine)
    assert count(url, "SELECT count(*) FROM traces") == 0
    clock[0] = 100.0
    upkeep.visit_if_due(engine)  # done: the next visit is an hour on
    engine.dispose()


def test_an_existing_postgres_database_is_partitioned_with_its_runs_and_readers(
    postgres: postgres_server.PostgresServer, pg_url: str
) -> None:
    """Revision 0009 on a database of revision 0008: every run kept with its id, a partition
    for each of their days, the id sequence going on, and a reader made before still reads the
    views."""
    engine = create_writer_engine(database_url_from(pg_url))
    upgrade(engine, "0008")
    rows = [trace_rows((TODAY - age) * DAY_NS + 1000) for age in (0, 3, 30)]
    with engine.begin() as connection:  # as the writer of revision 0008 wrote them
        connection.execute(insert(runs), [row for trace in rows for row in trace])
        ids = sorted(connection.execute(text("SELECT id FROM runs")).scalars())
    engine.dispose()
    # A reader made before, as `runspan db create-reader` of revision 0008 made it.
    admin = make_url(postgres.url).set(database=make_url(pg_url).database)
    engine = create_engine(admin)
    with engine.begin() as connection:
        connection.execute(text("CREATE ROLE old_reader LOGIN PASSWORD 'x'"))
        connection.execute(
            text(
                "GRANT SELECT ON runs, traces, model_prices, runs_v, traces_v, llm_calls,"
                " sessions_v, feedback, feedback_v, span_names, runspan_schema_version"
                " TO old_reader"
            )
        )
    engine.dispose()
    reader = make_url(pg_url).set(username="old_reader", password="x")
    upgrade_database(pg_url)
    assert {TODAY, TODAY - 3, TODAY - 30} <= set(days(pg_url))
    engine = create_engine(pg_url)
    with engine.begin() as connection:
        assert sorted(connection.execute(text("SELECT id FROM runs")).scalars()) == ids
    engine.dispose()
    write(pg_url, trace_rows(NOW, runs=1))
    assert count(pg_url, "SELECT max(id) FROM runs") > max(ids)
    with RunStore(reader.render_as_string(hide_password=False)) as store:
        assert len(store.runs(limit=100)) == 10
        assert store.sql("SELECT count(*) FROM runs_v").rows == [(10,)]
        assert store.sql("SELECT count(*) FROM llm_calls").rows == [(0,)]


@pytest.mark.parametrize("bad", ["0", "-3", "a week", "nan"])
def test_bad_retention_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match=RETENTION_DAYS_ENV):
        retention_days_from(None, environ={RETENTION_DAYS_ENV: bad})
    with pytest.raises(ValueError, match="retention_days"):
        retention_days_from(0)
    assert retention_days_from(None, environ={}) is None
    assert retention_days_from(None, environ={RETENTION_DAYS_ENV: "30"}) == 30


def test_prune_on_the_command_line_drops_days_on_postgres(pg_url: str) -> None:
    make_days(pg_url, TODAY - 41, TODAY)
    write(pg_url, *[trace_rows((TODAY - age) * DAY_NS) for age in (2, 40, 41)])
    command = [str(Path(sys.executable).parent / "runspan"), "prune", "--older-than", "30d"]
    done = subprocess.run(
        [*command, "--database-url", pg_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "deleted 2 traces" in done.stdout
    assert TODAY - 40 not in days(pg_url)
    assert count(pg_url, "SELECT count(*) FROM runs") == 3


@pytest.fixture
def pg_url(postgres: postgres_server.PostgresServer) -> Any:
    url = postgres_server.create_database(postgres.url)
    yield url
    postgres_server.drop_database(postgres.url, url)
    engine = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP ROLE IF EXISTS old_reader"))  # made by one test
    engine.dispose()

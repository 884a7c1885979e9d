"""PostgreSQL's runs partitioned by day (revision 0018): each day's runs in its partition, the
next days made ahead, retention dropping whole days, and an existing database partitioned with
its runs, ids, views and readers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from runspan.storage import RunStore, SqlSpanExporter
from runspan.storage.engine import create_writer_engine, database_url_from
from runspan.storage.migrate import head_revision, upgrade
from runspan.storage.partitions import AHEAD_DAYS, drop_before, make_days, partition_name
from runspan.storage.readonly import reader_statements
from runspan.storage.retention import Upkeep, remove_before
from runspan.storage.rows import COLUMNS
from runspan.storage.schema import DAY_NS
from runspan.storage.search import TraceSearch
from runspan.storage.upsert import write_rows
from runspan.testing import postgres as postgres_server
from tests.storage.test_retention import TODAY, trace_rows

HOUR_NS = 3600 * 10**9


@pytest.fixture
def pg_url(postgres: postgres_server.PostgresServer) -> Iterator[str]:
    url = postgres_server.create_database(postgres.url)
    yield url
    postgres_server.drop_database(postgres.url, url)


@pytest.fixture
def writer(pg_url: str) -> Iterator[Engine]:
    SqlSpanExporter(pg_url).shutdown()  # the schema
    engine = create_writer_engine(database_url_from(pg_url))
    yield engine
    engine.dispose()


def write(engine: Engine, *traces: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        write_rows(connection, [row for rows in traces for row in rows])


def where_runs_are(engine: Engine) -> dict[str, int]:
    """Each partition holding runs, and how many."""
    with engine.connect() as connection:
        return dict(
            connection.execute(
                text("SELECT CAST(tableoid AS regclass)::text, count(*) FROM runs GROUP BY 1")
            ).all()
        )


def partition_names(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.execute(
                text(
                    "SELECT CAST(inhrelid AS regclass)::text FROM pg_inherits"
                    " WHERE inhparent = CAST('runs' AS regclass)"
                )
            ).scalars()
        )


def test_a_days_runs_go_to_its_partition_made_on_first_use(writer: Engine, pg_url: str) -> None:
    """Runs of forty days ago (a late span), today, and tomorrow (a clock ahead): each lands in
    its day's partition, made within the batch that needed it, and reads back through runs."""
    days = (TODAY - 40, TODAY, TODAY + 1)
    write(writer, *(trace_rows(day * DAY_NS + HOUR_NS) for day in days))
    assert where_runs_are(writer) == {partition_name(day): 3 for day in days}
    with writer.connect() as connection:
        strategy, key = connection.execute(
            text(
                "SELECT partstrat, pg_get_partkeydef(partrelid) FROM pg_partitioned_table"
                " WHERE partrelid = CAST('runs' AS regclass)"
            )
        ).one()
    assert (strategy, key) == ("r", "RANGE (start_ns)")
    with RunStore(pg_url) as store:
        assert len(store.runs(limit=20)) == 9


def test_a_span_written_again_is_one_row(writer: Engine) -> None:
    """The running row of a span, then its end: one row (the key holds the start, which a
    span's writes share)."""
    (row,) = trace_rows(TODAY * DAY_NS + HOUR_NS, runs=1)
    running = {**row, "status": "running", "end_ns": None, "duration_ms": None}
    write(writer, [running])
    write(writer, [row])
    with writer.connect() as connection:
        assert connection.execute(text("SELECT status FROM runs")).scalars().all() == ["ok"]


def test_the_writer_makes_the_next_days_ahead(writer: Engine) -> None:
    """Between batches the writer makes today's partition and the next days', so that crossing
    midnight never waits for one."""
    later = (TODAY + 100) * DAY_NS + 23 * HOUR_NS
    Upkeep(time_ns=lambda: later).visit_if_due(writer)
    assert {partition_name(TODAY + 100 + ahead) for ahead in range(AHEAD_DAYS + 1)} <= (
        partition_names(writer)
    )
    assert partition_name(TODAY + 100 + AHEAD_DAYS + 1) not in partition_names(writer)


def test_two_writers_making_one_day_make_it_once(writer: Engine) -> None:
    """A writer waits while another makes the day's partition, then writes into it."""
    day = TODAY + 500
    other = create_writer_engine(writer.url)
    done = threading.Event()
    failed: list[BaseException] = []

    def second() -> None:
        try:
            write(other, trace_rows(day * DAY_NS + 2 * HOUR_NS))
        except BaseException as error:  # the assertion below reports it
            failed.append(error)
        done.set()

    with writer.begin() as connection:
        make_days(connection, [day])  # holds the lock until this commits
        threading.Thread(target=second, daemon=True).start()
        time.sleep(0.5)
        assert not done.is_set()  # waiting for the first
        write_rows(connection, trace_rows(day * DAY_NS + HOUR_NS))
    assert done.wait(30)
    other.dispose()
    assert failed == []
    assert where_runs_are(writer) == {partition_name(day): 6}


def test_retention_drops_the_days_before_the_cutoff_whole(writer: Engine) -> None:
    """Days wholly before the cutoff go with their partitions; the cutoff's day loses the
    traces that started before it, and a trace that began before it goes whole, its runs of
    later days too."""
    cutoff = (TODAY - 7) * DAY_NS + 12 * HOUR_NS
    old = [trace_rows((TODAY - day) * DAY_NS + HOUR_NS) for day in (10, 9)]
    before_cutoff = trace_rows(cutoff - HOUR_NS)
    # Starts before the cutoff, its last run the next day.
    spanning = trace_rows((TODAY - 7) * DAY_NS - 60 * 10**9, runs=3, span=DAY_NS // 2)
    kept = [trace_rows(cutoff + HOUR_NS), trace_rows((TODAY - 5) * DAY_NS)]
    write(writer, *old, before_cutoff, spanning, *kept)
    removed = remove_before(writer, cutoff)
    assert (removed.traces, removed.runs, removed.done) == (4, 12, True)
    names = partition_names(writer)
    assert partition_name(TODAY - 10) not in names
    assert partition_name(TODAY - 9) not in names
    with writer.connect() as connection:
        tables = set(connection.execute(text("SELECT tablename FROM pg_tables")).scalars())
    assert partition_name(TODAY - 10) not in tables  # dropped, not only detached
    assert where_runs_are(writer) == {partition_name(TODAY - 7): 3, partition_name(TODAY - 5): 3}


def test_a_detach_that_waits_too_long_is_finished_later(writer: Engine) -> None:
    """A read that began before the detach holds it; past the wait the partition is left
    (its rows no longer read), and the next visit finishes it."""
    day = TODAY - 30
    write(writer, trace_rows(day * DAY_NS + HOUR_NS))
    reader = writer.connect()
    reading = reader.begin()
    reader.execute(text("SELECT count(*) FROM runs")).scalar()
    assert drop_before(writer, (day + 1) * DAY_NS, wait_seconds=0.5) == 0
    reading.rollback()
    reader.close()
    assert drop_before(writer, (day + 1) * DAY_NS, wait_seconds=5) == 3
    assert partition_name(day) not in partition_names(writer)
    assert where_runs_are(writer) == {}


def test_an_existing_database_is_partitioned_with_its_runs_ids_views_and_readers(
    pg_url: str, postgres: postgres_server.PostgresServer
) -> None:
    """A database at revision 0017, with runs of three days and a role that can only read, is
    partitioned by the upgrade: every row kept with its id, the views and the reader's grants
    back, and the writer goes on (a running row finished, new ids after the old ones)."""
    engine = create_writer_engine(database_url_from(pg_url))
    upgrade(engine, "0017")
    traces = [trace_rows((TODAY - ago) * DAY_NS + HOUR_NS) for ago in (3, 1, 0)]
    running = {**traces[2][2], "status": "running", "end_ns": None, "duration_ms": None}
    rows = [*traces[0], *traces[1], *traces[2][:2], running]
    columns = ", ".join(COLUMNS)
    with engine.begin() as connection:  # as revision 0017's writer wrote them
        connection.execute(
            text(f"INSERT INTO runs ({columns}) VALUES ({', '.join(':' + c for c in COLUMNS)})"),
            rows,
        )
        before = connection.execute(text("SELECT * FROM runs ORDER BY id")).all()
    # A role that can only read, made as `runspan db create-reader` made it at 0017.
    database = str(make_url(pg_url).database)
    admin_url = make_url(postgres.url).set(database=database)
    role = f"reader_{database}"  # the name drop_database drops with the database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for statement in reader_statements(role, database, admin_url.password):
            connection.execute(text(statement))
    admin.dispose()
    reader_url = make_url(pg_url).set(username=role, password=admin_url.password)
    assert upgrade(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT * FROM runs ORDER BY id")).all() == before
        assert connection.execute(text("SELECT count(*) FROM runs_v")).scalar() == 9
    assert where_runs_are(engine) == {partition_name(TODAY - ago): 3 for ago in (3, 1, 0)}
    reader = create_engine(reader_url)
    with reader.connect() as connection:
        for name in ("runs", "runs_v", "traces_v", "llm_calls", "sessions_v", "runs_daily_v"):
            connection.execute(text(f"SELECT count(*) FROM {name}")).scalar()
        with pytest.raises(Exception, match="permission denied"):
            connection.execute(text(f"SELECT count(*) FROM {partition_name(TODAY)}"))
    reader.dispose()
    new = trace_rows(TODAY * DAY_NS + 2 * HOUR_NS)
    write(engine, [traces[2][2]], new)
    with engine.connect() as connection:
        statuses = connection.execute(text("SELECT status, count(*) FROM runs GROUP BY 1")).all()
        new_ids = connection.execute(
            text("SELECT id FROM runs WHERE trace_id = :trace"), {"trace": new[0]["trace_id"]}
        ).scalars()
        assert min(new_ids) > max(row.id for row in before)
    assert dict(statuses) == {"ok": 12}
    engine.dispose()


def test_a_recent_trace_is_read_and_written_without_touching_older_days(
    writer: Engine, pg_url: str
) -> None:
    """With an old day's partition locked against everything, a trace that began yesterday and
    goes on today is written to (its totals computed again) and read whole as Jaeger reads it
    (found by a search, then its runs): each statement by trace id keeps to the days from the
    trace's start, a constant by which the planner leaves the other days out. One that did not
    would wait for the lock."""
    old_day = TODAY - 20
    write(writer, trace_rows(old_day * DAY_NS + HOUR_NS))
    across = trace_rows(TODAY * DAY_NS - 60 * 10**9, runs=3, span=40 * 10**9)
    write(writer, across[:2])
    trace_id = across[0]["trace_id"]
    found: list[Any] = []

    def write_and_read() -> None:
        write(writer, across[2:])
        with RunStore(pg_url) as store:
            search = TraceSearch(service="svc", start_min_ns=TODAY * DAY_NS)
            found.append([found_id for found_id, *_ in store.find_traces(search)])
            found.append(store.runs_of_traces([trace_id]))

    holder = writer.connect()
    holding = holder.begin()
    holder.execute(text(f"LOCK TABLE {partition_name(old_day)} IN ACCESS EXCLUSIVE MODE"))
    work = threading.Thread(target=write_and_read, daemon=True)
    try:
        work.start()
        work.join(20)
        assert not work.is_alive(), "a statement waited for the old day's partition"
    finally:
        holding.rollback()
        holder.close()
        work.join(20)
    assert found[0] == [trace_id]
    assert [run.span_id for run in found[1]] == [row["span_id"] for row in across]

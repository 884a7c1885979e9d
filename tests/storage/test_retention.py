"""Retention: `runspan prune` in chunks (SQLite giving the space back), and the writer's
retention_days, on both databases."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from runspan.storage import SqlSpanExporter
from runspan.storage.engine import create_writer_engine, database_url_from
from runspan.storage.maintenance import prune
from runspan.storage.retention import RETENTION_DAYS_ENV, Upkeep, retention_days_from
from runspan.storage.rows import COLUMNS
from runspan.storage.schema import DAY_NS
from runspan.storage.upsert import write_rows
from runspan.testing import capture_spans
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("runspan.storage.retention.CHUNK_TRACES", 10)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    write(url, *[trace_rows(NOW - 3 * DAY_NS + i) for i in range(250)])
    clock = [0.0]
    upkeep = Upkeep(1, monotonic=lambda: clock[0])
    engine = create_writer_engine(database_url_from(url))
    upkeep.visit_if_due(engine)  # 20 chunks of 10: 50 traces are left
    assert count(url, "SELECT count(*) FROM traces") == 50
    upkeep.visit_if_due(engine)  # not due yet
    assert count(url, "SELECT count(*) FROM traces") == 50
    clock[0] = 1.5
    upkeep.visit_if_due(engine)
    assert count(url, "SELECT count(*) FROM traces") == 0
    clock[0] = 100.0
    upkeep.visit_if_due(engine)  # done: the next visit is an hour on
    engine.dispose()


@pytest.mark.parametrize("bad", ["0", "-3", "a week", "nan", "inf"])
def test_bad_retention_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match=RETENTION_DAYS_ENV):
        retention_days_from(None, environ={RETENTION_DAYS_ENV: bad})
    with pytest.raises(ValueError, match="retention_days"):
        retention_days_from(0)
    assert retention_days_from(None, environ={}) is None
    assert retention_days_from(None, environ={RETENTION_DAYS_ENV: "30"}) == 30


def test_prune_on_the_command_line_removes_whole_old_traces(database_url: str) -> None:
    """A trace that began before the cutoff goes with every run, even one that started after
    it; a newer trace stays whole (both databases, through the command)."""
    cutoff = NOW - 30 * DAY_NS
    straddling = trace_rows(cutoff - 10**9, runs=3, span=10**9)  # its last run: after the cutoff
    write(database_url, straddling, trace_rows(NOW - 40 * DAY_NS), trace_rows(NOW - DAY_NS))
    command = [str(Path(sys.executable).parent / "runspan"), "prune", "--older-than", "30d"]
    done = subprocess.run(
        [*command, "--database-url", database_url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"traces": 2' in done.stdout
    assert count(database_url, "SELECT count(*) FROM runs") == 3
    assert count(database_url, "SELECT count(*) FROM traces") == 1
    assert (
        count(
            database_url, f"SELECT count(*) FROM slowest_runs WHERE start_ns < {NOW - 2 * DAY_NS}"
        )
        == 0
    )

"""A process running chains is killed with SIGKILL: what is in its SQLite file afterwards."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import runspan.cli.arguments
from runspan.batching import SCHEDULE_DELAY_MILLIS
from runspan.cli import main
from runspan.storage import RunFilter, RunStore

# A run is written at the latest one flush interval after it ends, plus the time of the write
# in progress; this is that write's allowance on a loaded 2-core machine.
_WRITE_ALLOWANCE_NS = 250_000_000

_CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from langchain_core.runnables import RunnableLambda
    import runspan

    provider = runspan.configure(database_url=sys.argv[1], set_global=False)
    handler = runspan.TracingCallbackHandler(tracer_provider=provider)
    config = {"callbacks": [handler]}

    # In flight when the process dies: a chain stuck in its second step.
    stuck = threading.Event()
    hung = (
        RunnableLambda(lambda x: x, name="before")
        | RunnableLambda(lambda x: stuck.wait(), name="stuck")
    ).with_config(run_name="hung")
    threading.Thread(target=hung.invoke, args=(0, config), daemon=True).start()

    work = (
        RunnableLambda(lambda x: x + 1, name="step")
        | RunnableLambda(lambda x: x * 2, name="double")
    ).with_config(run_name="work")
    n = 0
    while True:
        assert work.invoke(n, config) == (n + 1) * 2
        print(n, time.time_ns(), flush=True)  # ended: this run's root is done
        n += 1
        time.sleep(0.001)
    """
)


def test_a_killed_process_leaves_a_sound_file_and_its_ended_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After SIGKILL the SQLite file passes integrity_check; every run that ended more than the
    writer's flush interval (plus the write in progress) before the kill is stored; the runs in
    flight are stored as running, and `runspan runs --status running --older-than 5m` finds
    them once five minutes have passed."""
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.stdout is not None
    ended: dict[int, int] = {}
    started = time.monotonic()
    margin = SCHEDULE_DELAY_MILLIS * 1_000_000 + _WRITE_ALLOWANCE_NS
    # Until 100 runs ended longer ago than the margin (however slow a loaded machine makes the
    # child), and the hung runs have had time to be written as running.
    while (
        sum(at < time.time_ns() - margin for at in ended.values()) < 100
        or time.monotonic() - started < 3
    ):
        line = child.stdout.readline()
        assert line, "the child stopped before it was killed"
        n, at = line.split()
        ended[int(n)] = int(at)
    killed_at = time.time_ns()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()

    with sqlite3.connect(tmp_path / "crash.db") as check:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    check.close()

    must_be_stored = {n for n, at in ended.items() if at < killed_at - margin}
    assert len(must_be_stored) >= 100
    with RunStore(url) as store:
        roots = store.runs(RunFilter(name="work", roots_only=True), limit=100_000)
        running = store.runs(RunFilter(status="running"), limit=100)
    stored_inputs = {run.inputs for run in roots if run.status == "ok"}
    assert must_be_stored <= stored_inputs
    assert {"hung", "stuck"} <= {run.name for run in running}
    assert "before" not in {run.name for run in running}  # it ended before the kill

    # Five minutes later, the hung runs are what an operator looks for.
    monkeypatch.setattr(runspan.cli.arguments, "_now_ns", lambda: time.time_ns() + 6 * 60 * 10**9)
    result = CliRunner().invoke(
        main,
        ["runs", "--status", "running", "--older-than", "5m", "--database-url", url, "--json"],
    )
    assert result.exit_code == 0, result.output
    found = {run["name"] for run in json.loads(result.output)}
    assert {"hung", "stuck"} <= found

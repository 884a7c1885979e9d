"""Feedback on runs: runspan.feedback() from any thread, `runspan feedback`, feedback_v, and
stats grouped by a feedback key."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

import runspan
from tests.storage.conftest import Stored
from tests.support import runspan_cli


def _answers(stored: Stored, count: int) -> list[str]:
    """``count`` runs of a chain named "answer"; their LangChain run ids."""
    collector = RunCollectorCallbackHandler()
    chain = RunnableLambda(lambda q: q.upper(), name="answer")
    for n in range(count):
        chain.invoke(f"q{n}", config={"callbacks": [stored.handler, collector]})
    return [str(run.id) for run in collector.traced_runs]


def test_feedback_from_another_thread_is_stored_and_joined(stored: Stored) -> None:
    """The app's thread is never held: the call queues; flush writes. The row has its run's
    trace, and feedback_v joins the run's name and status."""
    (run_id,) = _answers(stored, 1)
    results: list[bool] = []
    thread = threading.Thread(
        target=lambda: results.append(
            runspan.feedback(run_id, "thumbs", score=1, comment="spot on")
        )
    )
    thread.start()
    thread.join()
    assert results == [True]
    with stored.store() as store:  # flushes: spans, then feedback
        rows = store.sql(
            "SELECT run_id, trace_id, key, score, comment, source, run_name, run_status"
            " FROM feedback_v"
        )
        (run,) = store.runs(limit=10)
    assert [dict(zip(rows.columns, row, strict=True)) for row in rows.rows] == [
        {
            "run_id": run_id,
            "trace_id": run.trace_id,
            "key": "thumbs",
            "score": 1.0,
            "comment": "spot on",
            "source": "python",
            "run_name": "answer",
            "run_status": "ok",
        }
    ]


def test_bad_feedback_never_raises(
    stored: Stored, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runspan.scoring
    from runspan.logs import RateLimitedLog

    monkeypatch.setattr(runspan.scoring, "_notices", RateLimitedLog(interval=60.0))
    caplog.set_level(logging.WARNING, logger="runspan")
    assert runspan.feedback("not-a-run", "thumbs", score=1) is False
    assert runspan.feedback(str(uuid.uuid4()), "", score=1) is False
    assert runspan.feedback(str(uuid.uuid4()), "thumbs") is False  # neither score nor value
    assert runspan.feedback(str(uuid.uuid4()), "thumbs", score=float("nan")) is False
    assert "runspan.feedback" in caplog.text


def test_stats_grouped_by_a_feedback_key(stored: Stored) -> None:
    """`runspan stats --by feedback --key thumbs`: runs grouped by their latest answer; runs
    without one left out."""
    ids = _answers(stored, 5)
    for run_id in ids[:3]:
        runspan.feedback(run_id, "thumbs", value="up")
    runspan.feedback(ids[3], "thumbs", value="up")
    runspan.feedback(ids[3], "thumbs", value="down")  # changed its mind: the latest counts
    runspan.feedback(ids[4], "correctness", score=0.5)
    stored.flush()
    done = runspan_cli(
        stored.read_url, "stats", "--by", "feedback", "--key", "thumbs", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    assert {row["key"]: row["runs"] for row in json.loads(done.stdout)} == {"up": 3, "down": 1}
    refused = runspan_cli(stored.read_url, "stats", "--by", "feedback")
    assert refused.returncode == 2
    assert "--key" in refused.stderr


def test_the_command_stores_feedback_by_run_id_prefix(stored: Stored) -> None:
    (run_id,) = _answers(stored, 1)
    stored.flush()
    url = stored.url  # the command writes: the database's own URL, not the reader's
    done = runspan_cli(url, "feedback", run_id[:13], "correctness", "0.75", "--comment", "close")
    assert done.returncode == 0, done.stderr
    assert f"stored correctness = 0.75 on run {run_id}" in done.stdout
    labelled = runspan_cli(url, "feedback", run_id, "verdict", "--value", "wrong")
    assert labelled.returncode == 0, labelled.stderr
    with stored.store() as store:
        rows = store.sql("SELECT key, score, value, source FROM feedback ORDER BY id").rows
    assert rows == [("correctness", 0.75, None, "cli"), ("verdict", None, "wrong", "cli")]
    unknown = runspan_cli(url, "feedback", str(uuid.uuid4()).replace("-", "")[:12], "x", "1")
    assert unknown.returncode == 1
    not_a_number = runspan_cli(url, "feedback", run_id, "x", "great")
    assert not_a_number.returncode == 2


def test_feedback_before_its_run_is_written_still_joins(stored: Stored) -> None:
    """Feedback given while its run's span still waits in the queue has no trace yet in its
    row; feedback_v finds it through the run."""
    chain = RunnableLambda(lambda q: q, name="slow to store")
    collector = RunCollectorCallbackHandler()
    chain.invoke("q", config={"callbacks": [stored.handler, collector]})
    run_id = str(collector.traced_runs[0].id)
    writer = stored.processor
    assert writer.feedback.put(
        {
            "run_id": run_id,
            "key": "early",
            "score": 1.0,
            "value": None,
            "comment": None,
            "source": "python",
            "created_ns": 1,
        }
    )
    assert writer.feedback.flush()  # the feedback first, the span still queued
    with stored.store() as store:
        found: Any = store.sql("SELECT trace_id, run_trace_id, run_name FROM feedback_v").rows
        (run,) = store.runs(limit=5)
    assert found == [(None, run.trace_id, "slow to store")]

"""The corners, stored as LangChain records them: branches that outlive a failed parent, inputs
of failed and abandoned streams, LangGraph's retries, subgraphs, fan-outs, interrupts and
resumptions; and what users see of them in ``runspan show``, ``runspan runs`` and SQL.

Each case runs with LangChain's own run collector beside runspan's handler, on SQLite and on
PostgreSQL, and compares every stored run with LangChain's record of it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_core.tracers.schemas import Run as LangChainRun

from runspan.storage import Run
from tests.storage.conftest import Stored
from tests.support import all_runs, fake_chat, run_langgraph_corners, runspan_cli

_RUNSPAN = Path(sys.executable).parent / "runspan"


def _cli(url: str, *args: str) -> str:
    """The runspan command, as a user runs it, in a wide terminal."""
    done = runspan_cli(url, *args, columns=250)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _stored_runs(stored: Stored) -> dict[str, Run]:
    with stored.store() as store:
        return {run.run_id: run for run in store.runs(limit=1000) if run.run_id is not None}


def _langchain_status(run: LangChainRun) -> str:
    if run.error is None:
        return "ok"
    if run.error.startswith("GraphInterrupt"):
        return "interrupted"
    if run.error.startswith("CancelledError"):
        return "unfinished"
    return "error"


def _assert_as_langchain_records(stored: Stored, collector: RunCollectorCallbackHandler) -> None:
    """Every run LangChain recorded is stored once, with its name, parent, trace, status
    (interrupts and retried attempts named as such), end and input."""
    runs = _stored_runs(stored)
    recorded = all_runs(collector)
    assert {str(r.id) for r in recorded} == set(runs)
    for run in recorded:
        row = runs[str(run.id)]
        assert row.name == run.name
        expected = _langchain_status(run)
        if row.status == "retried":  # an attempt that failed, and was run again
            assert expected == "error"
            assert any(
                r.name == run.name and (r.attempt or 1) > (row.attempt or 1) for r in runs.values()
            )
        elif row.status == "interrupted" and expected == "ok":
            # LangChain records a paused graph's root as ok; runspan says it is paused.
            assert row.parent_run_id is None
            assert any(
                r.trace_id == row.trace_id and r.parent_run_id is not None
                for r in runs.values()
                if r.status == "interrupted"
            )
        else:
            assert row.status == expected, (run.name, row.status, run.error)
        assert row.end_ns is not None
        assert run.end_time is not None
        # Ends as LangChain's own clock read it (give or take a busy machine's scheduling),
        # not cut at the root's end, which comes half a second earlier in the branch case.
        assert abs(row.end_ns / 1e9 - run.end_time.timestamp()) < 0.2, run.name
        if run.parent_run_id is None:
            assert row.parent_run_id is None
        else:
            parent = runs[str(run.parent_run_id)]
            assert row.parent_run_id == str(run.parent_run_id)
            assert row.parent_span_id == parent.span_id
            assert row.trace_id == parent.trace_id
        inputs = run.inputs.get("input", run.inputs) if set(run.inputs) == {"input"} else run.inputs
        if isinstance(inputs, (dict, int, str)):
            assert row.inputs == inputs, run.name


class TestBranchesThatOutliveTheirParent:
    def test_an_async_branch_outliving_a_failed_sibling_keeps_its_status_end_and_children(
        self, stored: Stored, collector: RunCollectorCallbackHandler
    ) -> None:
        """A branch still running when its sibling fails the parallel (and the root) ends as
        LangChain says, after the root; a step that starts after the root failed is its
        child, in the same trace, not an orphan root."""

        async def slow(x: int) -> int:
            await asyncio.sleep(0.5)
            return x

        def boom(x: int) -> int:
            raise ValueError("boom")

        async def main() -> None:
            branches = RunnableParallel(
                a=RunnableLambda(slow) | RunnableLambda(lambda x: x, name="ident"),
                b=RunnableLambda(boom),
            )
            with pytest.raises(ValueError, match="boom"):
                await branches.ainvoke(1, config={"callbacks": [stored.handler, collector]})
            await asyncio.sleep(0.7)  # the branch goes on, as in a server's event loop

        asyncio.run(main())
        _assert_as_langchain_records(stored, collector)
        runs = {run.name: run for run in _stored_runs(stored).values()}
        root = runs["RunnableParallel<a,b>"]
        assert root.status == "error"
        assert runs["slow"].status == runs["ident"].status == "ok"
        assert runs["slow"].end_ns > root.end_ns  # type: ignore[operator]
        assert runs["ident"].start_ns > root.end_ns  # type: ignore[operator]
        assert stored.handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}


class TestStreamInputs:
    @pytest.mark.parametrize("how", ["fails", "abandoned"])
    def test_a_stream_keeps_its_input(
        self, stored: Stored, collector: RunCollectorCallbackHandler, how: str
    ) -> None:
        """A streamed chain whose last step fails, or whose consumer stops after the first
        chunk, is stored with its real input and LangChain's status, and ``runs --contains``
        finds it."""

        def shout(message: Any) -> Any:
            for word in str(message.content).split():
                yield word.upper()
                if how == "fails":
                    raise RuntimeError("the client went away")

        chain = (
            ChatPromptTemplate.from_template("Tell me about {topic}")
            | fake_chat("otters hold hands")
            | RunnableLambda(shout)
        )
        config: Any = {"callbacks": [stored.handler, collector]}
        stream = chain.stream({"topic": "otters"}, config=config)
        if how == "fails":
            with pytest.raises(RuntimeError):
                for _ in stream:
                    pass
        else:
            next(iter(stream))
            stream.close()
        runs = {run.name: run for run in _stored_runs(stored).values()}
        root = runs["RunnableSequence"]
        [recorded] = collector.traced_runs
        assert root.inputs == recorded.inputs == {"topic": "otters"}
        assert root.status == _langchain_status(recorded)
        listed = _cli(stored.url, "runs", "--contains", "otters", "--roots", "--json")
        assert [run["run_id"] for run in json.loads(listed)] == [root.run_id]


class TestLangGraph:
    def test_retries_subgraphs_fan_out_interrupts_and_resumption_as_langchain_records(
        self, stored: Stored, collector: RunCollectorCallbackHandler
    ) -> None:
        """A graph with a RetryPolicy node, a lambda edge, a subgraph and a Send fan-out, and
        an interrupted invocation resumed with Command(resume=...): every run as LangChain
        records it; attempts numbered, failed ones retried; the interrupted node and root
        interrupted; the resumption linked to the trace it resumes; nodes as a column."""
        run_langgraph_corners(stored.handler, collector)
        _assert_as_langchain_records(stored, collector)
        runs = list(_stored_runs(stored).values())
        searches = sorted((r for r in runs if r.name == "search"), key=lambda r: r.start_ns)
        assert [(r.status, r.attempt) for r in searches] == [
            ("retried", None),
            ("retried", 2),
            ("ok", 3),
        ]
        [subgraph] = [r for r in runs if r.name == "LangGraph" and r.langgraph_node == "digest"]
        assert subgraph.parent_run_id == next(r.run_id for r in runs if r.name == "digest")
        assert sorted(r.inputs["n"] for r in runs if r.name == "work") == [0, 1]
        interrupted = [r for r in runs if r.status == "interrupted"]
        # Two threads paused: one resumed later, one still waiting.
        assert sorted(r.name for r in interrupted) == ["LangGraph"] * 2 + ["approve"] * 2
        paused = {r.trace_id for r in interrupted if r.parent_run_id is None}
        [resumed] = [r for r in runs if r.resumes_trace_id is not None]
        assert resumed.resumes_trace_id in paused
        assert resumed.trace_id not in paused
        assert resumed.status == "ok"
        [cancelled] = [r for r in runs if r.name == "wait_for_approval"]
        assert (cancelled.status, cancelled.unfinished_reason) == ("unfinished", "cancelled")

        with stored.store() as store:
            by_name = {s.key: s for s in store.stats("name")}
            by_node = {s.key: s for s in store.stats("node")}
        assert by_name["search"].errors == 0  # retried attempts are not failures
        assert by_node["digest"].runs == 3  # the node, the subgraph in it, and its edge

    def test_what_users_see_in_show_and_runs(self, stored: Stored) -> None:
        """``show`` draws interrupts, attempts, retried attempts, the resumed trace and why a
        run did not finish; ``runs`` filters by each of them."""
        run_langgraph_corners(stored.handler)
        stored.flush()
        url = stored.url

        def listed(*args: str) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = json.loads(_cli(url, "runs", *args, "--json"))
            return found

        interrupted = listed("--interrupted")
        assert sorted(r["name"] for r in interrupted) == ["LangGraph"] * 2 + ["approve"] * 2
        retried = listed("--status", "retried")
        assert [(r["name"], r["attempt"]) for r in retried] == [("search", 2), ("search", None)]
        [cancelled] = listed("--reason", "cancelled")
        assert cancelled["name"] == "wait_for_approval"
        assert listed("--reason", "expired") == []
        assert sorted(r["name"] for r in listed("--node", "digest")) == [
            "LangGraph",
            "RunnableCallable",
            "digest",
        ]

        graph_trace = next(r for r in retried)["trace_id"]
        tree = _cli(url, "show", graph_trace)
        assert "attempt 2" in tree
        assert "attempt 3" in tree
        assert tree.count("retried") == 2
        assert tree.count("interrupted") == 0
        resumed = next(r for r in listed("--roots") if r["resumes_trace_id"])
        shown = _cli(url, "show", resumed["resumes_trace_id"])
        assert shown.count("interrupted") == 2  # the node that asked, and its graph
        paused = resumed["resumes_trace_id"]
        assert f"resumes trace {paused}" in _cli(url, "show", resumed["trace_id"])
        assert "unfinished (cancelled)" in _cli(url, "show", cancelled["trace_id"])
        assert "unfinished (cancelled)" in _cli(url, "runs", "--reason", "cancelled")

    def test_a_bad_reason_is_one_clear_line(self, stored: Stored) -> None:
        """An unknown reason, or a reason with another status, is refused with the choices."""
        stored.flush()
        for args, words in (
            (["--reason", "lost"], "cancelled, abandoned, root_ended, expired"),
            (["--reason", "cancelled", "--status", "ok"], "not ok ones"),
            (["--interrupted", "--status", "ok"], "not with --status ok"),
        ):
            done = subprocess.run(
                [str(_RUNSPAN), "runs", *args, "--database-url", stored.url],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode != 0
            assert words in done.stderr
            assert "Traceback" not in done.stderr

"""Every SQL query in docs/queries.md runs on both databases and answers its question."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

import runspan
from runspan.cli.demo_chain import run_demo
from runspan.storage.schema import DAY_NS
from tests.storage.conftest import Stored
from tests.storage.test_retention import trace_rows, write
from tests.support import UsageChatModel, run_langgraph_corners

_DOC = Path(__file__).parents[2] / "docs" / "queries.md"
_BLOCKS = re.findall(r"```sql\n(.*?)```", _DOC.read_text(), flags=re.DOTALL)


def _boom(_: object) -> None:
    raise TimeoutError("the weather service did not answer")


def test_the_page_has_at_least_ten_questions() -> None:
    """The page answers at least ten real questions."""
    assert len(_BLOCKS) >= 15
    assert len(re.findall(r"^### \d+\.", _DOC.read_text(), flags=re.MULTILINE)) >= 10


def test_every_documented_query_runs_and_finds_rows(stored: Stored) -> None:
    """With the demo's runs, a priced model call in a conversation, a failed tool, LangGraph's
    corners, feedback and a hung run stored, each query (in its database's variant) runs
    read-only and returns rows."""
    run_demo(stored.handler)
    run_langgraph_corners(stored.handler)
    UsageChatModel(model="gpt-4o").invoke(
        "2 + 2?", config={"callbacks": [stored.handler], "metadata": {"session_id": "maths"}}
    )
    with pytest.raises(TimeoutError):
        RunnableLambda(_boom, name="weather").invoke(
            1,
            config={"callbacks": [stored.handler], "metadata": {"user": "ann", "user_id": "ann"}},
        )
    with stored.store() as store:  # a run rated down although it succeeded
        rated = next(run for run in store.runs(limit=100) if run.status == "ok" and run.run_id)
    assert runspan.feedback(rated.run_id, "thumbs", score=0, comment="missed the point")
    stuck = stored.provider.get_tracer("app").start_span("hung job")
    try:
        with stored.store() as store:
            dialect = store.engine.dialect.name
            for block in _BLOCKS:
                first = block.strip().splitlines()[0]
                if first.endswith("only") and dialect not in first:
                    continue
                result = store.sql(block.strip().rstrip(";"))
                assert result.rows, f"no rows from:\n{block}"
    finally:
        stuck.end()


def _documented(heading: str) -> str:
    """The SQL under ``### heading`` on the page."""
    section = re.split(r"\n##+ ", _DOC.read_text().split(f"### {heading}\n", 1)[1])[0]
    (block,) = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    return str(block).strip().rstrip(";")


def test_the_most_expensive_traces_rank_only_traces_with_a_cost(stored: Stored) -> None:
    """Query 12 ranks the traces that have a cost: one of a model with no price (an unknown
    cost, which PostgreSQL would sort above every cost in descending order) is not listed."""
    UsageChatModel(model="gpt-4o").invoke("2 + 2?", config={"callbacks": [stored.handler]})
    UsageChatModel(model="a-model-with-no-price").invoke(
        "2 + 2?", config={"callbacks": [stored.handler]}
    )
    with stored.store() as store:
        result = store.sql(_documented("12. The most expensive traces"))
        everything = store.sql("SELECT count(*) FROM traces WHERE total_tokens IS NOT NULL")
    assert everything.rows == [(2,)]
    (row,) = result.rows
    cost = row[result.columns.index("cost_usd")]
    assert cost is not None
    assert cost > 0


def test_runs_per_metadata_value_count_the_last_day_only(stored: Stored) -> None:
    """Query 14 counts the runs of the day before the newest, not the history's: a user seen
    only before it is not listed."""
    newest = time.time_ns()
    traces = {"ann": newest - DAY_NS // 2, "bob": newest - DAY_NS - 10**9, "cy": newest}
    rows = []
    for user, start in traces.items():
        for row in trace_rows(start):
            row["metadata"] = json.dumps({"user": user})
            rows.append(row)
    write(stored.url, rows)
    with stored.store() as store:
        dialect = store.engine.dialect.name
        section = _DOC.read_text().split("### 14.", 1)[1].split("\n### ", 1)[0]
        (block,) = (
            b
            for b in re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
            if dialect in b.splitlines()[0]
        )
        result = store.sql(block.strip().rstrip(";"))
    assert sorted(result.rows) == [("ann", 3), ("cy", 3)]


def test_feedback_that_disagrees_with_the_status_is_listed_and_only_it(stored: Stored) -> None:
    """Query 23 lists a run that succeeded and was rated down, and one that failed and was
    rated up; not a success rated up, nor a failure rated down."""
    for _ in range(2):
        RunnableLambda(lambda x: x, name="fine").invoke(1, config={"callbacks": [stored.handler]})
        with pytest.raises(TimeoutError):
            RunnableLambda(_boom, name="broken").invoke(1, config={"callbacks": [stored.handler]})
    with stored.store() as store:
        fine = [run.run_id for run in store.runs(limit=10) if run.name == "fine"]
        broken = [run.run_id for run in store.runs(limit=10) if run.name == "broken"]
    for run_id, score in zip([*fine, *broken], [0, 1, 1, 0], strict=True):
        assert runspan.feedback(run_id, "thumbs", score=score)
    with stored.store() as store:
        result = store.sql(_documented("23. Runs whose feedback disagrees with their status"))
    listed = sorted((row[1], row[4]) for row in result.rows)
    assert listed == sorted([(fine[0], 0), (broken[0], 1)])


def test_the_tree_query_walks_the_whole_latest_trace(stored: Stored) -> None:
    """Query 1 (WITH RECURSIVE) returns every run of the demo's latest trace, in order."""
    run_demo(stored.handler)
    with stored.store() as store:
        latest = store.runs()[0].trace_id
        tree_query = next(b for b in _BLOCKS if "WITH RECURSIVE" in b)
        result = store.sql(tree_query.strip().rstrip(";"))
        (root,) = store.tree(latest)
    assert len(result.rows) == sum(1 for _ in root.walk()) == 11
    assert result.rows[0][0] == "travel_assistant"
    assert any(row[0].startswith("    ") for row in result.rows)  # nested two deep


def test_the_store_is_not_changed_by_them(stored: Stored) -> None:
    """The read-only connection refuses the page's INSERT example, which needs psql/sqlite3."""
    run_demo(stored.handler)
    example = re.search(r"```text\n(INSERT.*?)```", _DOC.read_text(), flags=re.DOTALL)
    assert example is not None
    with stored.store() as store, pytest.raises(Exception, match=r"read-?only|readonly"):
        store.sql(example.group(1).strip().rstrip(";"))
    with stored.store() as store:
        assert store.sql("SELECT count(*) FROM runs").rows[0][0] == 22

"""The query API: filters, trees, stats, cost and read-only SQL, on both databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from runspan.storage import NotFoundError, QueryError, RunFilter, RunStore, SqlSpanExporter
from runspan.storage.rows import COLUMNS
from runspan.storage.search import TraceSearch
from runspan.storage.upsert import write_rows

DAY_NS = 86_400 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def row(**values: Any) -> dict[str, Any]:
    """A runs row with sensible defaults; JSON columns given as Python values."""
    run_id = str(uuid.uuid4())
    base: dict[str, Any] = dict.fromkeys(COLUMNS)
    base.update(
        run_id=run_id,
        trace_id=run_id.replace("-", ""),
        span_id=run_id.replace("-", "")[16:],
        name="chain",
        run_type="chain",
        span_kind="internal",
        status="ok",
        start_ns=T0,
        end_ns=T0 + 10**6,
        duration_ms=1.0,
    )
    base.update(values)
    if "duration_ms" not in values:
        end = base["end_ns"]
        base["duration_ms"] = (end - base["start_ns"]) / 1e6 if end is not None else None
    for name in ("tags", "metadata", "attributes", "events", "inputs", "outputs"):
        if base[name] is not None:
            base[name] = json.dumps(base[name])
    return base


def child_of(parent: dict[str, Any], **values: Any) -> dict[str, Any]:
    """A row in ``parent``'s trace, linked to it by run id and span id."""
    return row(
        trace_id=parent["trace_id"],
        parent_run_id=parent["run_id"],
        parent_span_id=parent["span_id"],
        **values,
    )


@pytest.fixture
def store(database_url: str, read_url: str) -> Iterator[tuple[RunStore, SqlSpanExporter]]:
    writer = SqlSpanExporter(database_url)
    reader = RunStore(read_url)
    yield reader, writer
    reader.close()
    writer.shutdown()


def put(writer: SqlSpanExporter, *rows: dict[str, Any]) -> None:
    with writer.engine.begin() as connection:
        write_rows(connection, rows)


class TestFilters:
    def test_each_filter_selects_what_it_says(
        self, store: tuple[RunStore, SqlSpanExporter]
    ) -> None:
        """name, type, status, time window, duration, model, tag, metadata, text and roots
        each narrow the list, and runs come newest first."""
        reader, writer = store
        root = row(name="agent", start_ns=T0, end_ns=T0 + 900 * 10**6, tags=["prod"])
        put(
            writer,
            root,
            child_of(
                root,
                name="chat",
                run_type="llm",
                start_ns=T0 + 10**6,
                end_ns=T0 + 500 * 10**6,
                model_name="gpt-4o-mini",
                input_tokens=100,
                output_tokens=20,
                metadata={"user": "ann", "n": 3},
                inputs=[{"role": "human", "content": "Where is Paris 100%_?"}],
            ),
            row(name="tool", run_type="tool", status="error", start_ns=T0 + DAY_NS),
            row(name="late", status="running", start_ns=T0 + 2 * DAY_NS, end_ns=None),
        )

        def names(**kwargs: Any) -> list[str]:
            return [run.name for run in reader.runs(RunFilter(**kwargs))]

        assert names() == ["late", "tool", "chat", "agent"]
        assert names(name="tool") == ["tool"]
        assert names(run_type="llm") == ["chat"]
        assert names(status="error") == ["tool"]
        assert names(status="running") == ["late"]
        assert names(since=T0 + DAY_NS) == ["late", "tool"]
        assert names(until=T0 + DAY_NS) == ["chat", "agent"]
        assert names(min_duration_ms=400) == ["chat", "agent"]
        assert names(max_duration_ms=2) == ["tool"]
        assert names(model="gpt-4o-mini") == ["chat"]
        assert names(tag="prod") == ["agent"]
        assert names(tag="pro") == []
        assert names(metadata=("user", "ann")) == ["chat"]
        assert names(metadata=("n", "3")) == ["chat"]
        assert names(metadata=("user", "bob")) == []
        assert names(text="paris") == ["chat"]
        assert names(text="100%_") == ["chat"]
        assert names(text="%") == ["chat"]  # a wildcard character is just a character
        assert names(text="london") == []
        assert names(roots_only=True, run_type="chain") == ["late", "agent"]
        assert [r.name for r in reader.runs(order="slowest", limit=2)] == ["agent", "chat"]

    def test_a_names_newest_runs_across_days(self, store: tuple[RunStore, SqlSpanExporter]) -> None:
        """With a name (read day by day through its index), the newest runs of the name come
        out as sorting all of them by start time gives: across days, within a day, with a
        status, and with other names' runs newer still."""
        reader, writer = store
        rows = [
            row(name=name, status=status, start_ns=T0 + day * DAY_NS + minute * 60 * 10**9 + n)
            for day in range(4)
            for minute in (1439, 3, 720, 0, 59)  # not in start order within a day
            for n, (name, status) in enumerate(
                (("chain", "ok"), ("chain", "error"), ("other", "ok"))
            )
        ]
        put(writer, *rows)
        for status in (None, "error"):
            truth = sorted(
                (r for r in rows if r["name"] == "chain" and status in (None, r["status"])),
                key=lambda r: -r["start_ns"],
            )
            for limit in (1, 7, 100):
                got = reader.runs(RunFilter(name="chain", status=status), limit=limit)
                assert [(r.start_ns, r.status) for r in got] == [
                    (r["start_ns"], r["status"]) for r in truth[:limit]
                ], (status, limit)

    def test_filter_values_are_data_not_sql(self, store: tuple[RunStore, SqlSpanExporter]) -> None:
        """A filter value that looks like SQL matches nothing and changes nothing."""
        reader, writer = store
        put(writer, row(name="chain"))
        attack = "x' OR '1'='1"
        assert reader.runs(RunFilter(name=attack)) == []
        assert reader.runs(RunFilter(metadata=("k", attack))) == []
        assert reader.runs(RunFilter(text="'); DROP TABLE runs; --")) == []
        assert len(reader.runs()) == 1

    def test_bad_filters_are_clear_errors(self) -> None:
        """An unknown status or a negative duration is refused with what is accepted."""
        with pytest.raises(QueryError, match="running, ok, error, unfinished"):
            RunFilter(status="done")
        with pytest.raises(QueryError, match="milliseconds"):
            RunFilter(min_duration_ms=-1)


class TestTrees:
    def test_a_tree_by_run_id_trace_id_or_span_id(
        self, store: tuple[RunStore, SqlSpanExporter]
    ) -> None:
        """tree() gives the subtree of a run, or the whole trace, children in start order."""
        reader, writer = store
        root = row(name="root")
        a = child_of(root, name="a", start_ns=T0 + 2)
        b = child_of(root, name="b", start_ns=T0 + 1)
        leaf = child_of(a, name="leaf", start_ns=T0 + 3)
        put(writer, leaf, a, b, root)
        (whole,) = reader.tree(root["trace_id"])
        assert [run.name for run in whole.walk()] == ["root", "b", "a", "leaf"]
        (same,) = reader.tree(root["run_id"])
        assert [run.name for run in same.walk()] == ["root", "b", "a", "leaf"]
        (sub,) = reader.tree(a["run_id"].upper())
        assert [run.name for run in sub.walk()] == ["a", "leaf"]
        (by_span,) = reader.tree(a["span_id"])
        assert by_span.name == "a"

    def test_bad_and_unknown_ids(self, store: tuple[RunStore, SqlSpanExporter]) -> None:
        """A malformed id says what ids look like; an unknown one says it is not there."""
        reader, _ = store
        with pytest.raises(QueryError, match="not an id"):
            reader.tree("hello")
        with pytest.raises(NotFoundError, match="no run or trace"):
            reader.tree(str(uuid.uuid4()))


class TestStats:
    def test_percentiles_error_rates_and_tokens_per_group(
        self, store: tuple[RunStore, SqlSpanExporter]
    ) -> None:
        """p50/p95/p99 are nearest-rank over finished runs, the same on both databases;
        running runs count but have no latency."""
        reader, writer = store
        rows = [
            row(name="tool", duration_ms=float(ms), end_ns=T0 + ms * 10**6, status=status)
            for ms, status in zip(range(1, 101), ["error"] * 5 + ["ok"] * 95, strict=True)
        ]
        rows.append(row(name="tool", end_ns=None, duration_ms=None, status="running"))
        rows.append(row(name="other", duration_ms=7.0))
        put(writer, *rows)
        stats = {stat.key: stat for stat in reader.stats("name")}
        tool = stats["tool"]
        assert (tool.runs, tool.errors) == (101, 5)
        assert tool.error_rate == pytest.approx(5 / 101)
        assert (tool.p50_ms, tool.p95_ms, tool.p99_ms) == (50.0, 95.0, 99.0)
        assert stats["other"].p50_ms == stats["other"].p99_ms == 7.0
        (day,) = reader.stats("day")
        assert day.key == "2026-01-01"
        assert day.runs == 102

    def test_cost_comes_from_prices_at_query_time(
        self, store: tuple[RunStore, SqlSpanExporter], database_url: str
    ) -> None:
        """Seeded prices price known models (cached input tokens at the cache rate); an
        unknown model has no cost, not 0; changing a price re-prices old runs."""
        reader, writer = store
        put(
            writer,
            row(
                name="chat",
                run_type="llm",
                model_name="gpt-4o-mini-2024-07-18",
                input_tokens=1_000_000,
                cache_read_tokens=200_000,
                output_tokens=100_000,
            ),
            row(name="chat", run_type="llm", model_name="my-local-llama", input_tokens=10),
        )
        by_model = {stat.key: stat for stat in reader.stats("model")}
        # 800k input at $0.15/M + 200k cached at $0.075/M + 100k output at $0.60/M
        assert by_model["gpt-4o-mini-2024-07-18"].cost_usd == pytest.approx(0.195)
        assert by_model["my-local-llama"].cost_usd is None
        with writer.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO model_prices (model_pattern, input_usd_per_mtok,"
                    " output_usd_per_mtok, valid_from_ns) VALUES ('my-local-llama%', 1000, 0, 0)"
                )
            )
        priced = {run.model_name: run.cost_usd for run in reader.runs()}
        assert priced["my-local-llama"] == pytest.approx(0.01)
        assert reader.sql("SELECT sum(cost_usd) FROM llm_calls").rows[0][0] == pytest.approx(0.205)


class TestReadOnlySql:
    @pytest.mark.parametrize(
        "statement",
        [
            "DELETE FROM runs",
            "UPDATE runs SET name = 'x'",
            "DROP TABLE runs",
            "INSERT INTO model_prices (model_pattern, input_usd_per_mtok, output_usd_per_mtok,"
            " valid_from_ns) VALUES ('x', 1, 1, 0)",
            "CREATE TABLE evil (x INTEGER)",
            "ALTER TABLE runs ADD COLUMN evil INTEGER",
            "CREATE INDEX evil ON runs (name)",
        ],
    )
    def test_runspan_sql_cannot_write(
        self, store: tuple[RunStore, SqlSpanExporter], statement: str
    ) -> None:
        """Every kind of change is refused and the data is as it was."""
        reader, writer = store
        put(writer, row(name="kept"))
        with pytest.raises(QueryError):
            reader.sql(statement)
        assert [run.name for run in reader.runs()] == ["kept"]
        assert reader.sql("SELECT count(*) FROM model_prices").rows[0][0] >= 4

    def test_several_statements_at_once_are_refused(
        self, store: tuple[RunStore, SqlSpanExporter]
    ) -> None:
        """One statement per call: a second one cannot ride along after a SELECT."""
        reader, writer = store
        put(writer, row(name="kept"))
        with pytest.raises(QueryError):
            reader.sql("SELECT 1; DELETE FROM runs")
        assert len(reader.runs()) == 1

    def test_bad_sql_is_a_query_error(self, store: tuple[RunStore, SqlSpanExporter]) -> None:
        """A syntax error or unknown table comes back as the database worded it."""
        reader, _ = store
        with pytest.raises(QueryError):
            reader.sql("SELEC nothing")
        with pytest.raises(QueryError):
            reader.sql("SELECT * FROM no_such_table")


class TestRepeatedAndDatedFilters:
    def test_repeated_tags_and_metadata_mean_all_of_them(
        self, store: tuple[RunStore, SqlSpanExporter]
    ) -> None:
        """Two tags, or two metadata pairs, select the runs that have both, not the last one."""
        reader, writer = store
        put(
            writer,
            row(name="both", tags=["a", "b"], metadata={"user": "ann", "team": "x"}),
            row(name="only-a", tags=["a"], metadata={"user": "ann", "team": "y"}),
        )
        assert [r.name for r in reader.runs(RunFilter(tag=("a", "b")))] == ["both"]
        pairs = (("user", "ann"), ("team", "x"))
        assert [r.name for r in reader.runs(RunFilter(metadata=pairs))] == ["both"]
        assert sorted(r.name for r in reader.runs(RunFilter(tag="a"))) == ["both", "only-a"]

    def test_a_model_finds_its_dated_names_only(
        self, store: tuple[RunStore, SqlSpanExporter]
    ) -> None:
        """gpt-4o-mini finds gpt-4o-mini-2024-07-18; gpt-4o does not find gpt-4o-mini; a LIKE
        wildcard in the name is taken literally."""
        reader, writer = store
        put(
            writer,
            row(name="a", model_name="gpt-4o-mini"),
            row(name="b", model_name="gpt-4o-mini-2024-07-18"),
            row(name="c", model_name="gpt-4o-2024-08-06"),
            row(name="d", model_name="claude-3-5-sonnet-20241022"),
        )

        def names(model: str) -> list[str]:
            return sorted(r.name for r in reader.runs(RunFilter(model=model)))

        assert names("gpt-4o-mini") == ["a", "b"]
        assert names("gpt-4o") == ["c"]
        assert names("claude-3-5-sonnet") == ["d"]
        assert names("gpt-4o%") == []


class TestTraceSearch:
    """Jaeger's trace search: the newest traces with a matching span, from the newest spans
    through the index of start times, or (a rare filter) by grouping the whole range."""

    def test_the_newest_traces_whichever_way_they_are_found(
        self, store: tuple[RunStore, SqlSpanExporter], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        reader, writer = store
        rows = []
        for n in range(60):
            start = T0 + n * 10**9
            root = row(service_name="svc", name="turn", start_ns=start, end_ns=start + 10**8)
            tool = "slow_tool" if n % 20 == 3 else "tool"
            rows += [
                root,
                child_of(root, service_name="svc", name=tool, start_ns=start + 5, end_ns=start + 9),
                child_of(root, service_name="svc", name="late", start_ns=start + 7, end_ns=None),
            ]
        put(writer, *rows)

        def grouped(search: TraceSearch) -> list[tuple[str, int, int]]:
            """What grouping every matching span gives."""
            spans = [
                r
                for r in rows
                if r["end_ns"] is not None
                and r["service_name"] == search.service
                and (search.operation is None or r["name"] == search.operation)
                and (search.start_min_ns is None or r["start_ns"] >= search.start_min_ns)
            ]
            traces: dict[str, list[dict[str, Any]]] = {}
            for span in spans:
                traces.setdefault(span["trace_id"], []).append(span)
            found = sorted(traces.values(), key=lambda s: -max(x["start_ns"] for x in s))
            return [
                (s[0]["trace_id"], min(x["start_ns"] for x in s), max(x["end_ns"] for x in s))
                for s in found[: search.depth]
            ]

        searches = [
            TraceSearch(service="svc", depth=5),
            TraceSearch(service="svc", depth=100),
            TraceSearch(service="svc", operation="slow_tool", depth=2),
            TraceSearch(service="svc", start_min_ns=T0 + 30 * 10**9, depth=50),
            TraceSearch(service="nobody"),
        ]
        for most in (2000, 3):  # found from the newest spans; grouped after 3 spans
            monkeypatch.setattr("runspan.storage.queries._NEWEST_SPANS", most)
            for search in searches:
                assert reader.find_traces(search) == grouped(search), (most, search)

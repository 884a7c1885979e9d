"""The span writer: what lands in runs and traces, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from sqlalchemy import create_engine, text

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.storage import SqlSpanExporter, StorageSpanProcessor
from runspan.storage.open_spans import OpenSpans
from runspan.testing import SpanCapture
from tests.storage.conftest import Stored
from tests.support import FruitRetriever, UsageChatModel, all_runs, fake_chat


def _rows(url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query), params).mappings())
    finally:
        engine.dispose()


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _explode(_: Any) -> Any:
    raise KeyError("no such fruit")


class TestColumns:
    def test_every_run_type_fills_its_columns(self, stored: Stored) -> None:
        """Chain, prompt, chat model, parser, tool, retriever and a failed lambda each fill
        the columns users query: ids, names, types, status, times, model, tokens, content."""
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate

        chain = RunnableParallel(
            answer=ChatPromptTemplate.from_template("count {x}")
            | UsageChatModel()
            | StrOutputParser(),
            facts=RunnableLambda(lambda d: d["x"]) | FruitRetriever(),
            sum=RunnableLambda(lambda d: {"a": 1, "b": 2}) | add,
        ).with_config(run_name="root", tags=["team:fruit"], metadata={"user": "ann"})
        result = chain.invoke({"x": "apples"}, config={"callbacks": [stored.handler]})
        assert result["sum"] == 3
        with pytest.raises(KeyError):
            RunnableLambda(_explode).invoke(1, config={"callbacks": [stored.handler]})

        with stored.store() as store:
            runs = {run.name: run for run in store.runs(limit=100)}
        root = runs["root"]
        assert root.run_type == "chain"
        assert root.parent_run_id is None
        assert root.parent_span_id is None
        assert root.status == "ok"
        assert root.error_type is None
        assert root.end_ns is not None
        assert root.end_ns >= root.start_ns
        assert root.duration_ms == pytest.approx((root.end_ns - root.start_ns) / 1e6)
        assert root.tags == ["team:fruit"]
        assert root.metadata == {"user": "ann"}
        assert root.inputs == {"x": "apples"}
        assert root.outputs["sum"] == 3
        assert root.service_name == "test-app"
        assert root.span_kind == "internal"
        assert root.trace_id == root.run_id.replace("-", "")

        prompt = runs["ChatPromptTemplate"]
        assert prompt.run_type == "prompt"
        assert prompt.outputs == [{"role": "human", "content": "count apples"}]

        model = next(run for run in runs.values() if run.run_type == "llm")
        assert model.span_kind == "client"
        assert model.model_name == "gpt-test-2025"
        assert model.provider == "openai"
        assert (model.input_tokens, model.output_tokens, model.total_tokens) == (11, 7, 18)
        assert (model.cache_read_tokens, model.cache_creation_tokens) == (3, 2)
        assert model.reasoning_tokens == 5
        assert model.attributes["gen_ai.operation.name"] == "chat"
        assert model.outputs[0]["parts"] == [{"type": "text", "content": "four"}]
        assert model.metadata == {"user": "ann"}
        assert "team:fruit" in model.tags

        assert runs["StrOutputParser"].run_type == "parser"
        assert runs["StrOutputParser"].outputs == "four"
        tool_run = runs["execute_tool add"]
        assert tool_run.run_type == "tool"
        assert tool_run.attributes["gen_ai.tool.name"] == "add"
        retriever = runs["FruitRetriever"]
        assert retriever.run_type == "retriever"
        assert retriever.inputs == "apples"
        assert retriever.outputs[0]["content"] == "apples are red"
        for run in runs.values():
            if run.run_type != "llm":
                assert run.model_name is None
                assert run.input_tokens is None

        failed = runs["_explode"]
        assert failed.status == "error"
        assert failed.error_type == "KeyError"
        assert "no such fruit" in (failed.error_message or "")
        assert failed.events[0]["name"] == "exception"

    def test_streamed_model_records_time_to_first_token(self, stored: Stored) -> None:
        """A streamed chat call stores its time to first token in milliseconds."""
        list(
            UsageChatModel(reply="one two three").stream(
                "hi", config={"callbacks": [stored.handler]}
            )
        )
        with stored.store() as store:
            (run,) = store.runs()
        assert run.ttft_ms is not None
        assert 0 <= run.ttft_ms <= run.duration_ms
        assert run.output_tokens == 7

    def test_spans_of_other_instrumentations_are_stored_without_run_id(
        self, stored: Stored
    ) -> None:
        """An application span around a chain is a row too, with no run id, and the chain's
        root run is its child in the same trace."""
        tracer = stored.provider.get_tracer("app")
        with tracer.start_as_current_span("GET /fruit"):
            fake_chat().invoke("hi", config={"callbacks": [stored.handler]})
        with stored.store() as store:
            runs = {run.name: run for run in store.runs()}
            request = runs["GET /fruit"]
            assert request.run_id is None
            assert request.run_type is None
            chat = next(run for run in runs.values() if run.run_type == "llm")
            assert chat.parent_span_id == request.span_id
            assert chat.trace_id == request.trace_id
            (root,) = store.tree(request.trace_id)
        assert root.name == "GET /fruit"
        assert root.children[0] is not None
        trace = _rows(stored.url, "SELECT * FROM traces")[0]
        assert trace["name"] == "GET /fruit"
        assert trace["run_count"] == 2
        assert trace["root_run_id"] is None


class TestTrees:
    def test_parent_links_match_langchain_and_walk_with_recursive_sql(self, stored: Stored) -> None:
        """parent_run_id links are LangChain's, and a WITH RECURSIVE query over them finds the
        whole tree of a nested chain."""
        collector = RunCollectorCallbackHandler()
        inner = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
        chain = (
            RunnableLambda(lambda x: x)
            | RunnableParallel(a=inner, b=inner)
            | RunnableLambda(lambda d: d["a"] + d["b"])
        )
        assert chain.invoke(1, config={"callbacks": [stored.handler, collector]}) == 8
        expected = {
            str(run.id): str(run.parent_run_id) if run.parent_run_id else None
            for run in all_runs(collector)
        }
        stored.flush()
        got = {
            row["run_id"]: row["parent_run_id"]
            for row in _rows(stored.url, "SELECT run_id, parent_run_id FROM runs")
        }
        assert got == expected
        root = next(run_id for run_id, parent in expected.items() if parent is None)
        tree = _rows(
            stored.url,
            """
            WITH RECURSIVE tree(run_id, depth) AS (
                SELECT run_id, 0 FROM runs WHERE run_id = :root
                UNION ALL
                SELECT r.run_id, t.depth + 1 FROM runs r JOIN tree t ON r.parent_run_id = t.run_id
            )
            SELECT run_id, depth FROM tree
            """,
            root=root,
        )
        assert {row["run_id"] for row in tree} == set(expected)
        assert max(row["depth"] for row in tree) == 3  # sequence, parallel, inner sequence, lambda

    def test_trace_totals_are_exact_whatever_order_spans_arrive_in(self, database_url: str) -> None:
        """The same spans written in shuffled order and uneven batches give the same traces
        row: counts, errors, token sums, root name, status and times."""
        capture = SpanCapture()
        chain = RunnableParallel(
            a=UsageChatModel(), b=UsageChatModel(), c=RunnableLambda(lambda _: 1)
        ).with_config(run_name="totals")
        chain.invoke("hi", config={"callbacks": [capture.handler]})
        with pytest.raises(KeyError):
            (RunnableLambda(lambda x: x) | RunnableLambda(_explode)).invoke(
                1, config={"callbacks": [capture.handler]}
            )
        spans = list(capture.spans)
        capture.provider.shutdown()
        results = []
        for seed in (1, 2, 3):
            random.Random(seed).shuffle(spans)
            url = database_url
            exporter = SqlSpanExporter(url)
            with exporter.engine.begin() as connection:
                connection.execute(text("DELETE FROM runs"))
                connection.execute(text("DELETE FROM traces"))
            cut = seed * 2
            assert exporter.export(spans[:cut]) is SpanExportResult.SUCCESS
            assert exporter.export(spans[cut:]) is SpanExportResult.SUCCESS
            exporter.shutdown()
            results.append(
                [dict(row) for row in _rows(url, "SELECT * FROM traces ORDER BY start_ns")]
            )
        assert results[0] == results[1] == results[2]
        ok, failed = results[0]
        assert (ok["name"], ok["status"], ok["run_count"], ok["error_count"]) == (
            "totals",
            "ok",
            4,
            0,
        )
        assert (ok["input_tokens"], ok["output_tokens"], ok["total_tokens"]) == (22, 14, 36)
        assert ok["duration_ms"] == pytest.approx((ok["end_ns"] - ok["start_ns"]) / 1e6)
        assert (failed["status"], failed["run_count"], failed["error_count"]) == ("error", 3, 2)
        assert failed["input_tokens"] is None  # no model ran: unknown, not 0


class TestIdempotence:
    def test_the_same_spans_written_twice_are_one_row_each(self, database_url: str) -> None:
        """Writing a batch again (a retry after a timeout, say) changes nothing."""
        capture = SpanCapture()
        (RunnableLambda(lambda x: x) | fake_chat()).invoke(
            "hi", config={"callbacks": [capture.handler]}
        )
        spans = list(capture.spans)
        capture.provider.shutdown()
        exporter = SqlSpanExporter(database_url)
        exporter.export(spans)
        first = _rows(database_url, "SELECT * FROM runs ORDER BY id")
        exporter.export(spans)
        exporter.export(spans[:1])
        exporter.shutdown()
        again = _rows(database_url, "SELECT * FROM runs ORDER BY id")
        assert again == first
        assert len(again) == 3
        assert len(_rows(database_url, "SELECT * FROM traces")) == 1

    def test_runs_whose_ids_share_their_low_bits_are_each_stored(self, stored: Stored) -> None:
        """Rows are keyed by trace and span id: runs whose UUIDs share their low 64 bits (as
        neighbouring UUIDv7s nearly do) are still one row each, none overwriting another."""
        from uuid import UUID

        runs = [UUID(int=(i << 64) | 0x5EED) for i in range(1, 9)]
        for parent, run in zip([None, *runs], runs, strict=False):
            stored.handler.on_chain_start({}, {}, run_id=run, parent_run_id=parent, name="step")
        for run in reversed(runs):
            stored.handler.on_chain_end({}, run_id=run)
        with stored.store() as store:
            assert sorted(r.run_id for r in store.runs(limit=100)) == sorted(map(str, runs))


class TestRunning:
    def test_a_run_shows_as_running_and_is_completed_when_it_ends(self, stored: Stored) -> None:
        """While a chain is blocked inside a step, its runs are 'running' in SQL with no end;
        when it returns they are finished, and no late copy of the start undoes that."""
        entered, release = threading.Event(), threading.Event()

        def wait(x: int) -> int:
            entered.set()
            assert release.wait(10)
            return x

        chain = (RunnableLambda(lambda x: x, name="first") | RunnableLambda(wait)).with_config(
            run_name="slow"
        )
        worker = threading.Thread(
            target=chain.invoke, args=(1,), kwargs={"config": {"callbacks": [stored.handler]}}
        )
        worker.start()
        try:
            assert entered.wait(10)
            with stored.store() as store:
                running = {run.name: run for run in store.runs(limit=10)}
            assert running["slow"].status == "running"
            assert running["slow"].end_ns is None
            assert running["slow"].duration_ms is None
            assert running["wait"].status == "running"
            assert running["first"].status == "ok"
            trace = _rows(stored.url, "SELECT status, end_ns FROM traces")[0]
            assert (trace["status"], trace["end_ns"]) == ("running", None)
        finally:
            release.set()
            worker.join(10)
        with stored.store() as store:
            done = {run.name: run for run in store.runs(limit=10)}
        assert {run.status for run in done.values()} == {"ok"}
        assert done["slow"].duration_ms is not None
        assert _rows(stored.url, "SELECT status FROM traces")[0]["status"] == "ok"

    def test_a_run_still_open_is_written_as_running_without_a_flush(
        self, database_url: str
    ) -> None:
        """In a quiet app, with nothing else ending, a blocked run reaches SQL as running
        within the flush interval; once it ends, the writer holds nothing of it."""
        provider = TracerProvider(id_generator=RunIdGenerator())
        processor = StorageSpanProcessor(database_url, schedule_delay_millis=100)
        provider.add_span_processor(processor)
        handler = TracingCallbackHandler(tracer_provider=provider)
        entered, release = threading.Event(), threading.Event()

        def blocked(x: int) -> int:
            entered.set()
            assert release.wait(10)
            return x

        worker = threading.Thread(
            target=RunnableLambda(blocked, name="blocked").invoke,
            args=(1,),
            kwargs={"config": {"callbacks": [handler]}},
        )
        worker.start()
        try:
            assert entered.wait(10)
            deadline = time.monotonic() + 10
            statuses: list[str] = []
            while time.monotonic() < deadline and statuses != ["running"]:
                time.sleep(0.05)
                statuses = [row["status"] for row in _rows(database_url, "SELECT status FROM runs")]
            assert statuses == ["running"]
        finally:
            release.set()
            worker.join(10)
        assert provider.force_flush()
        assert [row["status"] for row in _rows(database_url, "SELECT status FROM runs")] == ["ok"]
        assert len(processor.exporter.open_spans) == 0
        provider.shutdown()

    def test_the_open_spans_it_tracks_are_bounded(self, tmp_path: Path) -> None:
        """Spans that are started and not ended (another instrumentation's, say) are tracked
        up to max_open_spans for running rows, no more; ended ones are let go."""
        processor = StorageSpanProcessor(
            f"sqlite:///{tmp_path / 'open.db'}", max_open_spans=2, schedule_delay_millis=60_000
        )
        provider = TracerProvider()
        provider.add_span_processor(processor)
        spans = [provider.get_tracer("other").start_span(f"open-{n}") for n in range(5)]
        assert len(processor.exporter.open_spans) == 2
        for span in spans:
            span.end()
        assert len(processor.exporter.open_spans) == 0
        assert provider.force_flush()
        provider.shutdown()
        names = {
            row["name"]
            for row in _rows(f"sqlite:///{tmp_path / 'open.db'}", "SELECT name FROM runs")
        }
        assert names == {f"open-{n}" for n in range(5)}

    @pytest.mark.parametrize("bad", [-1, 1.5, "many"])
    def test_a_bad_max_open_spans_is_refused_when_built(self, tmp_path: Path, bad: Any) -> None:
        """A bad bound fails when the processor is made, never on the callback path."""
        with pytest.raises(ValueError, match="max_open_spans"):
            StorageSpanProcessor(f"sqlite:///{tmp_path / 'bad.db'}", max_open_spans=bad)


def _span(name: str, start: int, span_id: int = 0x1234) -> ReadableSpan:
    context = SpanContext(
        trace_id=0xABC, span_id=span_id, is_remote=False, trace_flags=TraceFlags(1)
    )
    return ReadableSpan(
        name=name,
        context=context,
        start_time=start,
        end_time=start + 1000,
        status=Status(StatusCode.UNSET),
        attributes={"input.value": '"x"', "input.mime_type": "application/json"},
    )


class TestSqliteStatements:
    @pytest.mark.parametrize("count", [1, 3, 999, 1000, 1024, 1025, 5000])
    def test_a_batch_of_any_size_is_a_few_statements_of_power_of_two_rows(self, count: int) -> None:
        """Every row goes in exactly once, in statements no larger than SQLite's parameter
        limit allows, of sizes SQLite can keep prepared."""
        from runspan.storage.upsert import _chunk_sizes

        sizes = _chunk_sizes(count, 1092)
        assert sum(sizes) == count
        assert all(size & (size - 1) == 0 and size <= 1092 for size in sizes)
        assert len(sizes) <= count.bit_length() + count // 1024


class TestSqliteNone:
    def test_none_still_binds_as_null_for_everyone_and_an_apps_adapter_is_kept(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The writer makes sqlite3 bind None without its adapter lookups; an application's
        own sqlite3 queries still get NULL for None, and an adapter for None that the
        application registered is not replaced."""
        key = (type(None), sqlite3.PrepareProtocol)
        monkeypatch.delitem(sqlite3.adapters, key, raising=False)
        SqlSpanExporter(f"sqlite:///{tmp_path / 'a.db'}").shutdown()
        assert key in sqlite3.adapters
        with sqlite3.connect(":memory:") as connection:
            assert connection.execute("SELECT ? IS NULL", (None,)).fetchone() == (1,)
        connection.close()

        def apps_own(_: None) -> str:
            return "nothing"

        monkeypatch.setitem(sqlite3.adapters, key, apps_own)
        SqlSpanExporter(f"sqlite:///{tmp_path / 'b.db'}").shutdown()
        assert sqlite3.adapters[key] is apps_own


class TestBadRows:
    @pytest.mark.logs_warnings
    def test_a_row_the_database_refuses_is_skipped_and_the_batch_is_written(
        self, database_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A span whose start time no database column can hold is logged and skipped; the
        other spans of its batch are stored."""
        exporter = SqlSpanExporter(database_url)
        good = [_span(f"good-{i}", 1_700_000_000_000_000_000 + i, span_id=i + 1) for i in range(5)]
        bad = _span("bad", 2**70, span_id=99)
        exporter.export([*good[:2], bad, *good[2:]])
        assert exporter.rejected_rows == 1
        exporter.shutdown()
        names = {row["name"] for row in _rows(database_url, "SELECT name FROM runs")}
        assert names == {f"good-{i}" for i in range(5)}
        assert any("refused" in record.getMessage() for record in caplog.records)

    def test_text_a_database_cannot_hold_is_cleaned_not_lost(self, stored: Stored) -> None:
        """NUL characters and lone surrogates in content (which PostgreSQL and UTF-8 refuse)
        are replaced, and the run is stored."""
        RunnableLambda(lambda x: "ok").invoke(
            {"text": "a\x00b", "odd": "c\ud800d"}, config={"callbacks": [stored.handler]}
        )
        with stored.store() as store:
            (run,) = store.runs()
        assert run.outputs == "ok"
        assert run.inputs["text"].startswith("a")
        assert run.inputs["text"].endswith("b")
        assert "\x00" not in run.inputs["text"]


class TestPausesForTheApp:
    """A batch is written in steps, and the app's threads run between them: a web app's event
    loop is not held up for the whole of a batch (bench/latency.py measures how long)."""

    def test_the_app_runs_while_a_big_batch_is_made_into_rows_and_it_is_written_whole(
        self, database_url: str, read_url: str
    ) -> None:
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate
        from sqlalchemy import event

        from runspan.testing import capture_spans
        from tests.support import AppTurns

        chain = ChatPromptTemplate.from_template("count {x}") | UsageChatModel() | StrOutputParser()
        with capture_spans() as capture:
            for n in range(250):
                chain.invoke({"x": n}, config={"callbacks": [capture.handler]})
        spans = capture.spans
        assert len(spans) == 1000
        exporter = SqlSpanExporter(database_url)
        turns = AppTurns()
        # The batch's rows are made first (pure Python, which gives up the GIL only where the
        # writer pauses), then the open spans are looked up, then the database is written.
        while_making_rows: list[int] = []

        class NotingOpenSpans(OpenSpans):
            def unwritten(self) -> list[ReadableSpan]:
                while_making_rows.append(turns.count)
                return super().unwritten()

        exporter.open_spans = NotingOpenSpans()
        statements: list[int] = []  # parameters of each INSERT into runs (SQLite)

        def executing(*args: Any) -> None:
            statement, parameters = args[2], args[3]
            if statement.startswith("INSERT INTO runs"):
                statements.append(len(parameters))

        event.listen(exporter.engine, "before_cursor_execute", executing)
        results: list[SpanExportResult] = []
        try:
            turns.during(lambda: results.append(exporter.export(spans)))
        finally:
            exporter.shutdown()
        assert results == [SpanExportResult.SUCCESS]
        assert while_making_rows[0] >= 3, "the app waited while 1,000 rows were made"
        if database_url.startswith("sqlite"):
            from runspan.storage.rows import COLUMNS
            from runspan.storage.upsert import ROWS_PER_STATEMENT

            assert sum(statements) == 1000 * len(COLUMNS)
            assert max(statements) <= ROWS_PER_STATEMENT * len(COLUMNS)
        (counts,) = _rows(
            read_url,
            "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM traces) AS traces,"
            " (SELECT sum(run_count) FROM traces) AS counted",
        )
        assert dict(counts) == {"runs": 1000, "traces": 250, "counted": 1000}

    def test_catching_up_it_writes_the_fewest_statements(self, tmp_path: Path) -> None:
        """Behind (a backlog), each statement gives up the GIL and among busy threads the
        writer waits its turn to get it back: it writes hundreds of rows a statement then."""
        from sqlalchemy import event

        from runspan.storage.rows import COLUMNS

        spans = [_span(f"run {n}", start=n, span_id=n + 1) for n in range(1000)]
        exporter = SqlSpanExporter(f"sqlite:///{tmp_path / 'backlog.db'}")
        exporter.slices.behind = lambda: True
        statements: list[int] = []

        def executing(*args: Any) -> None:
            if args[2].startswith("INSERT INTO runs"):
                statements.append(len(args[3]) // len(COLUMNS))

        event.listen(exporter.engine, "before_cursor_execute", executing)
        try:
            assert exporter.export(spans) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert sum(statements) == 1000
        assert max(statements) >= 256
        assert len(statements) <= 8

"""``runspan export``: stored runs replayed over OTLP, as they were sent live."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.cli import main
from runspan.exporters import OtlpSettings, OtlpSpanExporter
from runspan.storage import RunStore, StorageSpanProcessor
from tests.exporters.conftest import Receiver
from tests.exporters.receivers import GrpcReceiver, HttpReceiver, ReceivedSpan
from tests.support import UsageChatModel, run_agent


def run_chains(url: str, receiver: Receiver | None, invokes: int = 3) -> TracerProvider:
    """Runs a chain with a failing step ``invokes`` times, stored in ``url`` and, when a
    receiver is given, exported to it live."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "replayed-app"}), id_generator=RunIdGenerator()
    )
    provider.add_span_processor(StorageSpanProcessor(url))
    if receiver is not None:
        settings = OtlpSettings.build(receiver.endpoint, protocol=receiver.protocol, timeout=1)
        assert settings is not None
        provider.add_span_processor(BatchSpanProcessor(OtlpSpanExporter(settings)))
    handler = TracingCallbackHandler(tracer_provider=provider)
    chain = (
        ChatPromptTemplate.from_template("{q}")
        | UsageChatModel().with_config(tags=["replay"], metadata={"user": "ann"})
        | StrOutputParser()
        | RunnableLambda(lambda text: text + "!", name="shout")
    )

    def fail(_: Any) -> None:
        raise KeyError("missing")

    for n in range(invokes):
        assert chain.invoke({"q": f"question {n}"}, config={"callbacks": [handler]}) == "four!"
        with pytest.raises(KeyError):
            RunnableLambda(fail, name="broken").invoke(n, config={"callbacks": [handler]})
        "".join(chain.stream({"q": "streamed"}, config={"callbacks": [handler]}))
    assert provider.force_flush()
    provider.shutdown()
    return provider


def _iso(ns: int) -> str:
    """``ns`` as an ISO time, to the microsecond (rounded down)."""
    moment = dt.datetime.fromtimestamp(ns // 10**9, tz=dt.timezone.utc)
    return moment.replace(microsecond=(ns // 1000) % 10**6).isoformat()


def export(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["export", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def comparable(span: ReceivedSpan) -> dict[str, Any]:
    """A received span with JSON text attributes parsed (PostgreSQL's JSONB reorders keys)."""
    attributes = dict(span.attributes)
    for key in ("input.value", "output.value", "langchain.metadata"):
        if key in attributes and attributes.get(key.replace("value", "mime_type")) != "text/plain":
            attributes[key] = json.loads(attributes[key])
    for key in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.definitions"):
        if key in attributes:
            attributes[key] = json.loads(attributes[key])
    return {**vars(span), "attributes": attributes, "scope": None}


class TestExport:
    def test_replay_sends_what_live_export_sent(
        self, receiver: Receiver, database_url: str, tmp_path: Path
    ) -> None:
        """The same runs, sent live to one receiver and replayed from SQL to another, arrive
        identical: ids, parents, names, kinds, times, status, attributes, events, service."""
        run_chains(database_url, receiver)
        live = {span.span_id: comparable(span) for span in receiver.received.spans}
        other: Receiver = GrpcReceiver() if receiver.protocol == "grpc" else HttpReceiver()
        other.start()
        try:
            code, out = export(
                "--endpoint",
                other.endpoint,
                "--protocol",
                other.protocol,
                "--since",
                "1h",
                "--database-url",
                database_url,
            )
        finally:
            other.stop()
        assert code == 0, out
        assert f"sent {len(live)} spans of 9 traces" in out
        replayed = {span.span_id: comparable(span) for span in other.received.spans}
        assert replayed == live

    def test_an_agent_replays_with_its_genai_content(
        self, receiver: Receiver, database_url: str
    ) -> None:
        """A ReAct agent's model, tool and graph spans replay from SQL with the GenAI
        content attributes they were sent with live: messages, tool arguments and results."""
        provider = TracerProvider(id_generator=RunIdGenerator())
        provider.add_span_processor(StorageSpanProcessor(database_url))
        settings = OtlpSettings.build(receiver.endpoint, protocol=receiver.protocol, timeout=1)
        assert settings is not None
        provider.add_span_processor(BatchSpanProcessor(OtlpSpanExporter(settings)))
        run_agent(TracingCallbackHandler(tracer_provider=provider))
        assert provider.force_flush()
        provider.shutdown()
        live = {span.span_id: comparable(span) for span in receiver.received.spans}
        other: Receiver = GrpcReceiver() if receiver.protocol == "grpc" else HttpReceiver()
        other.start()
        try:
            code, out = export(
                *("--endpoint", other.endpoint, "--protocol", other.protocol),
                *("--since", "1h", "--database-url", database_url),
            )
        finally:
            other.stop()
        assert code == 0, out
        replayed = {span.span_id: comparable(span) for span in other.received.spans}
        assert replayed == live
        tools = [s for s in replayed.values() if s["name"] == "execute_tool get_weather"]
        assert tools[0]["attributes"]["gen_ai.tool.call.result"] == "sunny and 21C in Oslo"

    @pytest.mark.logs_warnings
    def test_after_an_outage_every_span_arrives_exactly_once(
        self, database_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The receiver is down while the chains run; the chains are unaffected; `runspan
        export --since` then delivers every stored run once, with its original ids."""
        receiver = GrpcReceiver()
        run_chains(database_url, receiver)  # never started: down the whole time
        assert receiver.received.spans == []
        assert any("failed" in r.getMessage() for r in caplog.records)
        receiver.start()
        try:
            code, out = export(
                "--endpoint", receiver.endpoint, "--since", "1h", "--database-url", database_url
            )
        finally:
            receiver.stop()
        assert code == 0, out
        with RunStore(database_url) as store:
            stored = store.runs(limit=1000)
        ids = [span.span_id for span in receiver.received.spans]
        assert sorted(ids) == sorted(run.span_id for run in stored)
        assert len(set(ids)) == len(ids)
        traces = {run.span_id: run.trace_id for run in stored}
        assert all(traces[span.span_id] == span.trace_id for span in receiver.received.spans)

    def test_one_trace_by_trace_id_or_run_id(self, receiver: Receiver, tmp_path: Path) -> None:
        """--trace sends one trace; --run sends the whole trace of that run."""
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        run_chains(url, None, invokes=2)
        with RunStore(url) as store:
            chat = store.runs(limit=1000)[-1]
            whole = store.tree(chat.trace_id)
        size = sum(1 for root in whole for _ in root.walk())
        code, out = export(
            "--endpoint",
            receiver.endpoint,
            "--protocol",
            receiver.protocol,
            "--trace",
            chat.trace_id,
            "--database-url",
            url,
            "--json",
        )
        assert code == 0, out
        assert json.loads(out)["spans"] == size
        assert {span.trace_id for span in receiver.received.spans} == {chat.trace_id}
        code, out = export(
            "--endpoint", receiver.endpoint, "--protocol", receiver.protocol,
            "--run", str(chat.run_id), "--database-url", url,
        )  # fmt: skip
        assert code == 0, out
        assert len(receiver.received.spans) == 2 * size

    def test_running_runs_are_counted_not_sent(self, receiver: Receiver, tmp_path: Path) -> None:
        """A run with no end (a crashed process) is not a span yet: export says how many."""
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        provider = TracerProvider(id_generator=RunIdGenerator())
        provider.add_span_processor(StorageSpanProcessor(url))
        tracer = provider.get_tracer("app")
        root = tracer.start_span("hung")
        child = tracer.start_span("done", context=trace.set_span_in_context(root))
        child.end()
        assert provider.force_flush()
        trace_id = f"{root.get_span_context().trace_id:032x}"
        code, out = export(
            "--endpoint", receiver.endpoint, "--protocol", receiver.protocol,
            "--trace", trace_id, "--database-url", url,
        )  # fmt: skip
        root.end()
        provider.shutdown()
        assert code == 0, out
        assert "sent 1 spans of 1 traces" in out
        assert "1 runs still running were not sent" in out
        assert [span.name for span in receiver.received.spans] == ["done"]

    def test_a_window_sends_the_runs_that_ended_in_it(
        self, receiver: Receiver, tmp_path: Path
    ) -> None:
        """--since/--until select runs by when they ended, each run once."""
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        run_chains(url, None, invokes=3)
        with RunStore(url) as store:
            ended = sorted(store.runs(limit=1000), key=lambda run: run.end_ns or 0)
        middle = ended[len(ended) // 3 : 2 * len(ended) // 3]
        first, last = middle[0].end_ns, middle[-1].end_ns
        assert first is not None
        assert last is not None
        code, out = export(
            "--endpoint", receiver.endpoint, "--protocol", receiver.protocol,
            "--since", _iso(first), "--until", _iso(last + 999), "--database-url", url,
        )  # fmt: skip
        assert code == 0, out
        sent = sorted(span.span_id for span in receiver.received.spans)
        expected = sorted(run.span_id for run in ended if first <= (run.end_ns or 0) <= last + 999)
        assert sent == expected

    def test_a_receiver_that_is_down_is_one_consistent_error(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One line says it could not send, why, and how many spans were not sent: not a
        running app's "retries every 30 s" warning followed by "sent 0 spans"."""
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        run_chains(url, None, invokes=1)
        down = GrpcReceiver()
        code, out = export("--endpoint", down.endpoint, "--since", "1h", "--database-url", url)
        assert code == 1
        assert out.strip().startswith(f"Error: could not send to {down.endpoint}")
        assert "Is the receiver up?" in out
        assert "sent 0 spans of" not in out
        assert not [r for r in caplog.records if r.name == "runspan"]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--since", "1h"], "give --endpoint"),
            (["--endpoint", "http://127.0.0.1:4317"], "give one of --since, --trace or --run"),
            (["--endpoint", "localhost:4317", "--since", "1h"], "is not an http(s) URL"),
            (["--endpoint", "http://127.0.0.1:4317", "--trace", "nope"], "is not an id"),
            (["--endpoint", "http://127.0.0.1:4317", "--since", "yesterday"], "neither an age"),
            (["--endpoint", "http://127.0.0.1:4317", "--until", "1h", "--trace", "ab"], "--until"),
        ],
    )
    def test_bad_arguments_are_one_clear_line(
        self, args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        run_chains(url, None, invokes=1)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        code, out = export(*args, "--database-url", url)
        assert code != 0
        assert message in out
        assert "Traceback" not in out


def test_sending_a_trace_twice_repeats_its_ids(tmp_path: Path) -> None:
    """Sending the same trace twice gives the same ids twice (a receiver like Jaeger
    deduplicates by id), never a new trace."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    run_chains(url, None, invokes=1)
    receiver = GrpcReceiver()
    receiver.start()
    try:
        for _ in range(2):
            code, out = export(
                "--endpoint", receiver.endpoint, "--since", "1h", "--database-url", url
            )
            assert code == 0, out
    finally:
        receiver.stop()
    spans = receiver.received.spans
    assert len(spans) % 2 == 0
    assert len({(s.trace_id, s.span_id) for s in spans}) == len(spans) // 2

"""Spans over OTLP, with the real exporter and real sockets, to receivers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import tool
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanContext, TraceFlags

import runspan
from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.exporters import OtlpSettings, OtlpSpanExporter
from runspan.storage import Run, RunStore, StorageSpanProcessor
from tests.exporters.conftest import Receiver
from tests.exporters.receivers import GrpcReceiver, ReceivedSpan, decode
from tests.support import UsageChatModel, run_agent, validated

FOUR_MIB = 4 * 1024 * 1024


@tool
def forecast(city: str) -> str:
    """The weekend forecast for a city."""
    return f"{city}: 14°C"


def assistant() -> Runnable[Any, Any]:
    """A nested chain: a lambda calling a tool, a prompt, a chat model with usage, a parser."""
    prompt = ChatPromptTemplate.from_messages([("human", "{question} ({weather})")])
    answer = prompt | UsageChatModel(model="gpt-4o-mini") | StrOutputParser()

    def gather(question: str) -> dict[str, str]:
        return {"question": question, "weather": forecast.invoke({"city": "Paris"})}

    return (RunnableLambda(gather) | answer).with_config(run_name="assistant")


@dataclass
class Exporting:
    """A provider that stores into SQLite and exports over OTLP, and a handler on it."""

    provider: TracerProvider
    exporter: OtlpSpanExporter
    handler: TracingCallbackHandler
    database_url: str

    def flush(self) -> None:
        assert self.provider.force_flush()

    def stored(self) -> list[Run]:
        with RunStore(self.database_url) as store:
            return store.runs(limit=10_000)


@pytest.fixture
def exporting_to(tmp_path: Path) -> Iterator[Any]:
    made: list[TracerProvider] = []

    def build(receiver: Receiver, **settings: Any) -> Exporting:
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        options = OtlpSettings.build(
            receiver.endpoint, protocol=receiver.protocol, timeout=2, **settings
        )
        assert options is not None
        exporter = OtlpSpanExporter(options)
        provider = TracerProvider(
            resource=Resource.create({"service.name": "travel-app"}),
            id_generator=RunIdGenerator(),
        )
        provider.add_span_processor(StorageSpanProcessor(url))
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
        made.append(provider)
        return Exporting(provider, exporter, TracingCallbackHandler(tracer_provider=provider), url)

    yield build
    for provider in made:
        provider.shutdown()


def bare_span(name: str, span_id: int = 1, **attributes: Any) -> ReadableSpan:
    """A finished span made by hand, for exporting directly."""
    return ReadableSpan(
        name=name,
        context=SpanContext(7, span_id, is_remote=False, trace_flags=TraceFlags(1)),
        resource=Resource.create({"service.name": "by-hand"}),
        attributes=attributes,
        start_time=1,
        end_time=2,
    )


def by_span_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


class TestLiveExport:
    def test_a_nested_chain_arrives_as_the_tree_it_ran_as(
        self, receiver: Receiver, exporting_to: Any
    ) -> None:
        """Every span arrives once, each parent is a span of the same trace, and names, kinds,
        service.name, run ids and token counts are those stored in SQL."""
        exporting = exporting_to(receiver)
        result = assistant().invoke("Paris?", config={"callbacks": [exporting.handler]})
        assert result == "four"
        exporting.flush()

        spans = receiver.received.spans
        stored = exporting.stored()
        assert len(spans) == len(stored) == len(by_span_id(spans))
        received = by_span_id(spans)
        for span in spans:
            assert span.parent_span_id is None or span.parent_span_id in received
            assert span.trace_id == spans[0].trace_id
            assert span.service_name == "travel-app"
        for run in stored:
            span = received[run.span_id]
            assert (span.name, span.parent_span_id, span.start_ns, span.end_ns) == (
                run.name,
                run.parent_span_id,
                run.start_ns,
                run.end_ns,
            )
            assert span.attributes["langchain.run_id"] == run.run_id
        names = {span.name for span in spans}
        assert {"assistant", "ChatPromptTemplate", "chat gpt-4o-mini"} <= names
        assert "execute_tool forecast" in names
        chat = next(span for span in spans if span.name == "chat gpt-4o-mini")
        assert chat.kind == "SPAN_KIND_CLIENT"
        assert chat.attributes["gen_ai.usage.input_tokens"] == 11
        assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"

    def test_a_react_agent_arrives_with_the_genai_conversation(
        self, receiver: Receiver, exporting_to: Any
    ) -> None:
        """A LangGraph ReAct agent with two tool calls, as Jaeger's GenAI tab receives it:
        model spans with system instructions, input and output messages that validate against
        the conventions' schemas, tool spans with arguments and results, the graph an agent."""
        exporting = exporting_to(receiver)
        run_agent(exporting.handler)
        exporting.flush()
        spans = receiver.received.spans
        models = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
        assert len(models) == 2
        for model in models:
            for name in ("gen_ai.system_instructions", "gen_ai.input.messages"):
                validated(model.attributes, name)
            (said,) = validated(model.attributes, "gen_ai.output.messages")
            assert said["finish_reason"] in ("tool_call", "stop")
            assert "input.value" not in model.attributes
        tools = {s.name: s.attributes for s in spans if s.name.startswith("execute_tool")}
        assert json.loads(tools["execute_tool get_time"]["gen_ai.tool.call.arguments"]) == {
            "city": "Oslo"
        }
        assert tools["execute_tool get_time"]["gen_ai.tool.call.result"] == "14:05 in Oslo"
        (graph,) = [s for s in spans if s.name == "LangGraph"]
        assert graph.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert graph.attributes["gen_ai.agent.name"] == "LangGraph"

    def test_errors_and_first_chunks_arrive_as_status_and_events(
        self, receiver: Receiver, exporting_to: Any
    ) -> None:
        """A failed run is ERROR with its message and an exception event (Jaeger's error tag
        and log); a streamed model call carries its first-chunk event."""
        exporting = exporting_to(receiver)

        def explode(_: Any) -> None:
            raise ValueError("no forecast for Atlantis")

        with pytest.raises(ValueError, match="Atlantis"):
            RunnableLambda(explode, name="lookup").invoke(
                "x", config={"callbacks": [exporting.handler]}
            )
        streamed = "".join(
            (ChatPromptTemplate.from_template("{q}") | UsageChatModel() | StrOutputParser()).stream(
                {"q": "hi"}, config={"callbacks": [exporting.handler]}
            )
        )
        assert streamed == "four"
        exporting.flush()

        spans = {span.name: span for span in receiver.received.spans}
        failed = spans["lookup"]
        assert failed.status == "STATUS_CODE_ERROR"
        assert "no forecast for Atlantis" in failed.status_message
        (exception,) = [event for event in failed.events if event[0] == "exception"]
        assert exception[2]["exception.type"] == "ValueError"
        chat = spans["chat gpt-test"]
        assert any(event[0] == "gen_ai.first_chunk" for event in chat.events)


class TestBoundedPayloads:
    def test_a_10_mb_input_goes_as_a_preview_and_costs_no_other_run(
        self, receiver: Receiver, exporting_to: Any
    ) -> None:
        """SQL keeps the 10 MB value whole; OTLP gets a preview with a marker and the original
        size; every other span of the batch arrives whole; no request tops 4 MiB."""
        exporting = exporting_to(receiver)
        exporting.handler = TracingCallbackHandler(
            tracer_provider=exporting.provider, max_value_chars=20_000_000
        )
        huge = "x" * 10_000_000
        echo = RunnableLambda(lambda text: len(text), name="measure")
        small = RunnableLambda(lambda text: text.upper(), name="shout")
        assert echo.invoke(huge, config={"callbacks": [exporting.handler]}) == 10_000_000
        for word in ("a", "b", "c"):
            small.invoke(word, config={"callbacks": [exporting.handler]})
        exporting.flush()

        spans = receiver.received.spans
        measured = next(span for span in spans if span.name == "measure")
        value = measured.attributes["input.value"]
        assert len(value) < 5000
        assert "10,000,002 chars" in value
        assert "whole in SQL" in value
        shouted = sorted(span.attributes["output.value"] for span in spans if span.name == "shout")
        assert shouted == ['"A"', '"B"', '"C"']
        assert max(receiver.received.sizes) < FOUR_MIB
        with RunStore(exporting.database_url) as store:
            (stored,) = store.tree(measured.trace_id)
        assert stored.inputs == huge

    def test_a_long_conversation_previews_as_messages_that_still_validate(
        self, receiver: Receiver, exporting_to: Any
    ) -> None:
        """A model call with 200,000 characters of messages: on the wire its GenAI messages
        keep their JSON shape (Jaeger's GenAI tab still renders them), the cut text marked;
        SQL keeps them whole."""
        exporting = exporting_to(receiver)
        exporting.handler = TracingCallbackHandler(
            tracer_provider=exporting.provider, max_value_chars=1_000_000
        )
        story = "once upon a time " * 6000  # 102,000 chars
        UsageChatModel().invoke(
            [("system", story), ("human", story)], config={"callbacks": [exporting.handler]}
        )
        exporting.flush()
        (chat,) = [s for s in receiver.received.spans if s.name == "chat gpt-test"]
        sent = chat.attributes["gen_ai.input.messages"]
        assert len(sent) < 5000
        (message,) = validated(chat.attributes, "gen_ai.input.messages")
        assert message["parts"][0]["content"].endswith(
            "[cut by runspan: 102,000 chars; whole in SQL]"
        )
        validated(chat.attributes, "gen_ai.system_instructions")
        with RunStore(exporting.database_url) as store:
            (stored,) = store.tree(chat.trace_id)
        assert stored.inputs[0]["parts"][0]["content"] == story

    def test_a_batch_over_the_receiver_limit_is_split(self, receiver: Receiver) -> None:
        """1,200 spans of 4,000 characters each (about 5 MB) go in several requests, each under
        the receivers' 4 MiB limit, and all arrive."""
        settings = OtlpSettings.build(receiver.endpoint, protocol=receiver.protocol, timeout=5)
        assert settings is not None
        exporter = OtlpSpanExporter(settings)
        spans = [
            bare_span(f"run {n}", n + 1, **{"input.value": f"{n:06d}" + "y" * 3994})
            for n in range(1200)
        ]
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert len(receiver.received.sizes) >= 2
        assert max(receiver.received.sizes) < FOUR_MIB
        arrived = sorted(span.attributes["input.value"][:6] for span in receiver.received.spans)
        assert arrived == [f"{n:06d}" for n in range(1200)]

    def test_a_running_apps_exporter_sends_small_requests_and_history_goes_at_once(
        self, receiver: Receiver
    ) -> None:
        """The SDK's encoder holds the GIL for each request it encodes: a running app's
        exporter sends at most 16 spans a request (about half a millisecond of encoding, with
        a pause for the app's threads between requests). Replaying history (``runspan
        export``) sends them at once. Every span arrives either way."""
        from runspan.exporters.otlp import DEFAULT_MAX_BATCH_SPANS

        settings = OtlpSettings.build(receiver.endpoint, protocol=receiver.protocol, timeout=5)
        assert settings is not None
        spans = [bare_span(f"run {n}", n + 1, step=n) for n in range(100)]
        for most, expected in ((DEFAULT_MAX_BATCH_SPANS, 7), (None, 1)):
            receiver.received.raw.clear()
            receiver.received.spans.clear()
            exporter = OtlpSpanExporter(settings, max_batch_spans=most)
            try:
                assert exporter.export(spans) is SpanExportResult.SUCCESS
            finally:
                exporter.shutdown()
            sizes = [
                len(decode(trace_service_pb2.ExportTraceServiceRequest.FromString(body)))
                for body in receiver.received.raw
            ]
            assert len(sizes) == expected, sizes
            assert max(sizes) <= (most or 100)
            arrived = sorted(span.attributes["step"] for span in receiver.received.spans)
            assert arrived == list(range(100))


class TestReceiverDown:
    @pytest.mark.logs_warnings
    def test_the_chain_runs_on_and_one_line_says_so(
        self, receiver: Receiver, exporting_to: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the receiver down for 40 invokes the chain's results are unchanged, every run
        is in SQL, and the outage is one warning, not one per batch or span; when the receiver
        is back, one line says how many spans were not sent."""
        receiver.stop()
        exporting = exporting_to(receiver)
        chain = assistant()
        for _ in range(40):
            assert chain.invoke("Paris?", config={"callbacks": [exporting.handler]}) == "four"
            exporting.provider.force_flush()
        assert receiver.received.spans == []
        stored = exporting.stored()
        assert len({run.trace_id for run in stored}) == 40
        per_invoke = len(stored) // 40
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "failed" in warnings[0]
        assert "stored in SQL" in warnings[0]

        receiver.start()
        for _ in range(100):  # until export works again (gRPC also backs off reconnecting)
            exporting.exporter._resume_at = 0.0  # don't wait out runspan's own pause
            chain.invoke("Paris?", config={"callbacks": [exporting.handler]})
            exporting.flush()
            if not exporting.exporter.failing:
                break
            time.sleep(0.1)
        arrived = len(receiver.received.spans)
        assert arrived > 0
        assert arrived % per_invoke == 0  # whole invokes, none of the outage's
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 2, warnings
        assert "works again" in warnings[1]
        assert "were not sent" in warnings[1]
        assert "runspan export" in warnings[1]


class TestReceiverSlow:
    def test_a_receiver_that_does_not_answer_never_holds_the_chain(
        self, receiver: Receiver, exporting_to: Any
    ) -> None:
        """While the receiver holds every request unanswered, 30 invokes complete (the export
        waits in the background); once it answers, every span arrives."""
        receiver.received.answering.clear()
        exporting = exporting_to(receiver)
        chain = assistant()
        try:
            for _ in range(30):
                assert chain.invoke("Paris?", config={"callbacks": [exporting.handler]}) == "four"
            assert receiver.received.spans == []
        finally:
            receiver.received.answering.set()
        exporting.flush()
        stored = exporting.stored()
        assert sorted(s.span_id for s in receiver.received.spans) == sorted(
            run.span_id for run in stored
        )


class TestTransport:
    def test_tls_and_headers_from_the_environment_reach_the_receiver(
        self,
        tls_receiver: Receiver,
        ca_file: str,
        fresh_globals: None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """configure() with only OTEL_* variables: endpoint, protocol, CA certificate and an
        authenticating header; the spans arrive over TLS with the header."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tls_receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tls_receiver.protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cr%3Dt,x-tenant=acme")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "env-app")
        provider = runspan.configure(set_global=False)
        handler = TracingCallbackHandler(tracer_provider=provider)
        RunnableLambda(lambda x: x, name="step").invoke(1, config={"callbacks": [handler]})
        assert runspan.flush()

        (span,) = tls_receiver.received.spans
        assert (span.name, span.service_name) == ("step", "env-app")
        headers = tls_receiver.received.headers[0]
        assert headers["x-api-key"] == "s3cr=t"
        assert headers["x-tenant"] == "acme"

    def test_plain_text_with_headers_given_as_arguments(
        self, receiver: Receiver, fresh_globals: None
    ) -> None:
        """TLS off (http://) and headers as a mapping passed to configure()."""
        provider = runspan.configure(
            set_global=False,
            otlp_endpoint=receiver.endpoint,
            otlp_protocol=receiver.protocol,
            otlp_headers={"Authorization": "Bearer t0ken"},
        )
        handler = TracingCallbackHandler(tracer_provider=provider)
        RunnableLambda(lambda x: x, name="step").invoke(1, config={"callbacks": [handler]})
        assert runspan.flush()
        assert [span.name for span in receiver.received.spans] == ["step"]
        assert receiver.received.headers[0]["authorization"] == "Bearer t0ken"

    @pytest.mark.logs_warnings
    def test_a_receiver_with_a_certificate_the_client_does_not_trust_gets_nothing(
        self, tls_receiver: Receiver, caplog: pytest.LogCaptureFixture
    ) -> None:
        """TLS is verified: without the test CA the handshake fails, and that is the one line
        logged."""
        settings = OtlpSettings.build(
            tls_receiver.endpoint, protocol=tls_receiver.protocol, timeout=1
        )
        assert settings is not None
        exporter = OtlpSpanExporter(settings)
        span = bare_span("secret")
        try:
            assert exporter.export([span]) is SpanExportResult.FAILURE
        finally:
            exporter.shutdown()
        assert tls_receiver.received.spans == []
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1


@pytest.mark.logs_warnings
def test_grpc_receiver_refuses_over_4_mib_like_jaeger() -> None:
    """The test receiver enforces the 4 MiB limit, so the splitting test means something."""
    receiver = GrpcReceiver()
    receiver.start()
    try:
        settings = OtlpSettings.build(receiver.endpoint, protocol="grpc", timeout=2)
        assert settings is not None
        exporter = OtlpSpanExporter(settings, max_batch_bytes=10 * FOUR_MIB)
        span = bare_span("big", **{f"k{n}": "z" * 4000 for n in range(1500)})
        try:
            assert exporter.export([span]) is SpanExportResult.FAILURE
        finally:
            exporter.shutdown()
        assert receiver.received.spans == []
    finally:
        receiver.stop()

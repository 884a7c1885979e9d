"""Jaeger's remote-storage API (``jaeger.storage.v2``) from ``runspan serve``, as Jaeger's query
service calls it: a gRPC client over a real socket, against runs stored on both databases."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from runspan.serve.jaeger import (
    capabilities_pb2,
    capabilities_pb2_grpc,
    dependency_storage_pb2,
    dependency_storage_pb2_grpc,
    trace_storage_pb2,
    trace_storage_pb2_grpc,
)
from tests.serve.conftest import Served
from tests.support import validated


@pytest.fixture
def reader(serve: Any, history: dict[str, Any]) -> Iterator[Any]:
    served: Served = serve()
    channel = grpc.insecure_channel(served.grpc)
    yield (
        trace_storage_pb2_grpc.TraceReaderStub(channel),
        dependency_storage_pb2_grpc.DependencyReaderStub(channel),
        channel,
    )
    channel.close()


def _trace_id(runs: list[Any], name: str) -> str:
    return next(run.trace_id for run in runs if run.name == name)


def _spans(chunks: list[TracesData]) -> list[Any]:
    return [
        span
        for chunk in chunks
        for resource_spans in chunk.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def _attributes(span: Any) -> dict[str, Any]:
    found = {}
    for pair in span.attributes:
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


def _chunk_trace_ids(chunk: TracesData) -> set[str]:
    return {span.trace_id.hex() for span in _spans([chunk])}


class TestTraceReader:
    def test_services_and_operations(self, reader: Any, history: dict[str, Any]) -> None:
        traces, _, _ = reader
        services = traces.GetServices(trace_storage_pb2.GetServicesRequest()).services
        assert list(services) == ["billing", "travel-app"]
        operations = traces.GetOperations(
            trace_storage_pb2.GetOperationsRequest(service="travel-app")
        ).operations
        pairs = {(op.name, op.span_kind) for op in operations}
        assert ("execute_tool get_weather", "internal") in pairs
        assert ("chat gpt-test", "client") in pairs
        clients = traces.GetOperations(
            trace_storage_pb2.GetOperationsRequest(service="travel-app", span_kind="client")
        ).operations
        assert {op.span_kind for op in clients} == {"client"}

    def test_get_traces_streams_each_trace_whole_and_alone(
        self, reader: Any, history: dict[str, Any]
    ) -> None:
        """One trace per chunk, never an empty chunk; every ended run of the agent's trace,
        with its GenAI content valid against the conventions' schemas."""
        traces, _, _ = reader
        runs = history["runs"]
        agent, chain = _trace_id(runs, "LangGraph"), _trace_id(runs, "trim")
        request = trace_storage_pb2.GetTracesRequest(
            query=[
                trace_storage_pb2.GetTraceParams(trace_id=bytes.fromhex(agent)),
                trace_storage_pb2.GetTraceParams(trace_id=bytes.fromhex(chain)),
                trace_storage_pb2.GetTraceParams(trace_id=bytes(16 * [7])),  # unknown: ignored
            ]
        )
        chunks = list(traces.GetTraces(request))
        assert [_chunk_trace_ids(chunk) for chunk in chunks] == [{agent}, {chain}]
        agent_spans = _spans(chunks[:1])
        assert len(agent_spans) == sum(1 for run in runs if run.trace_id == agent)
        models = [s for s in agent_spans if _attributes(s).get("gen_ai.operation.name") == "chat"]
        assert len(models) == 2
        for model in models:
            validated(_attributes(model), "gen_ai.input.messages")
            validated(_attributes(model), "gen_ai.output.messages")
        root = next(s for s in agent_spans if s.name == "LangGraph")
        assert _attributes(root)["gen_ai.operation.name"] == "invoke_agent"

    def test_values_are_whole_up_to_64_kb_then_marked(
        self, reader: Any, history: dict[str, Any]
    ) -> None:
        traces, _, _ = reader
        chain = _trace_id(history["runs"], "trim")
        chunks = list(
            traces.GetTraces(
                trace_storage_pb2.GetTracesRequest(
                    query=[trace_storage_pb2.GetTraceParams(trace_id=bytes.fromhex(chain))]
                )
            )
        )
        trim = next(span for span in _spans(chunks) if span.name == "trim")
        value = _attributes(trim)["input.value"]
        assert value.startswith('"rain rain')
        assert 64 * 1024 <= len(value) < 65 * 1024
        assert value.endswith("[cut by runspan: 100,002 chars; whole in SQL]")

    def test_a_large_trace_streams_in_consecutive_chunks(
        self, reader: Any, history: dict[str, Any]
    ) -> None:
        traces, _, _ = reader
        batch = _trace_id(history["runs"], "nightly batch")
        chunks = list(
            traces.GetTraces(
                trace_storage_pb2.GetTracesRequest(
                    query=[trace_storage_pb2.GetTraceParams(trace_id=bytes.fromhex(batch))]
                )
            )
        )
        assert len(chunks) == 3
        assert all(_chunk_trace_ids(chunk) == {batch} for chunk in chunks)
        assert len({span.span_id for span in _spans(chunks)}) == 1200

    def test_a_bad_trace_id_is_refused(self, reader: Any) -> None:
        traces, _, _ = reader
        with pytest.raises(grpc.RpcError) as refused:
            list(
                traces.GetTraces(
                    trace_storage_pb2.GetTracesRequest(
                        query=[trace_storage_pb2.GetTraceParams(trace_id=b"short")]
                    )
                )
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ({"service_name": "travel-app", "operation_name": "execute_tool get_time"}, ["agent"]),
            ({"attributes": {"langchain.run_type": "tool"}}, ["agent"]),
            ({"attributes": {"gen_ai.request.model": "gpt-test"}}, ["trim"]),
            ({"attributes": {"gen_ai.agent.name": "LangGraph"}}, ["agent"]),
            ({"attributes": {"error": "true"}}, ["divide"]),
            ({"service_name": "billing"}, ["checkout"]),
            ({"service_name": "travel-app", "duration_min_ms": 60_000}, []),
            ({"service_name": "travel-app", "start_after_s": 3600}, []),
            ({"service_name": "travel-app", "search_depth": 2}, ["checkout", "batch"]),
        ],
    )
    def test_find_traces_and_their_ids(
        self, reader: Any, history: dict[str, Any], query: dict[str, Any], expected: list[str]
    ) -> None:
        """Search by service, operation, attributes (a column's, the JSON's, Jaeger's error
        tag), duration, time and depth: FindTraceIDs and FindTraces agree, newest first."""
        traces, _, _ = reader
        runs = history["runs"]
        names = {
            "agent": "LangGraph",
            "trim": "trim",
            "divide": "divide",
            "checkout": "checkout",
            "batch": "nightly batch",
        }
        parameters = trace_storage_pb2.TraceQueryParameters(
            service_name=query.get("service_name", ""),
            operation_name=query.get("operation_name", ""),
            search_depth=query.get("search_depth", 0),
            attributes=[
                trace_storage_pb2.KeyValue(
                    key=key, value=trace_storage_pb2.AnyValue(string_value=value)
                )
                for key, value in query.get("attributes", {}).items()
            ],
        )
        if "duration_min_ms" in query:
            parameters.duration_min.FromMilliseconds(query["duration_min_ms"])
        if "start_after_s" in query:
            parameters.start_time_min.FromSeconds(int(time.time()) + query["start_after_s"])
        found = traces.FindTraceIDs(trace_storage_pb2.FindTraceIDsRequest(query=parameters))
        ids = [item.trace_id.hex() for item in found.trace_ids]
        assert ids == [_trace_id(runs, names[name]) for name in expected]
        assert all(
            item.start.ToNanoseconds() <= item.end.ToNanoseconds() for item in found.trace_ids
        )
        chunks = list(traces.FindTraces(trace_storage_pb2.FindTracesRequest(query=parameters)))
        streamed = list(dict.fromkeys(next(iter(_chunk_trace_ids(c))) for c in chunks))
        assert streamed == ids
        assert all(len(_chunk_trace_ids(chunk)) == 1 for chunk in chunks)

    def test_summaries_are_left_to_jaeger(self, reader: Any) -> None:
        """FindTraceSummaries is optional: UNIMPLEMENTED tells Jaeger to use FindTraces."""
        _, _, channel = reader
        call = channel.unary_stream(
            "/jaeger.storage.v2.TraceReader/FindTraceSummaries",
            request_serializer=lambda _: b"",
            response_deserializer=bytes,
        )
        with pytest.raises(grpc.RpcError) as refused:
            list(call(None))
        assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_capabilities_say_what_the_search_does(reader: Any) -> None:
    _, _, channel = reader
    answer = capabilities_pb2_grpc.CapabilitiesStub(channel).GetCapabilities(
        capabilities_pb2.GetCapabilitiesRequest()
    )
    assert answer.search.without_service_name
    assert answer.search.same_span_conjunction


class TestDependencyReader:
    def test_calls_between_services(self, reader: Any) -> None:
        _, dependencies, _ = reader
        found = dependencies.GetDependencies(dependency_storage_pb2.GetDependenciesRequest())
        assert [(d.parent, d.child, d.call_count) for d in found.dependencies] == [
            ("travel-app", "billing", 1)
        ]
        future = dependency_storage_pb2.GetDependenciesRequest()
        future.start_time.FromSeconds(int(time.time()) + 3600)
        assert not dependencies.GetDependencies(future).dependencies


def test_the_token_guards_the_read_api_too(serve: Any, history: dict[str, Any]) -> None:
    served = serve("--token", "reader-token")
    channel = grpc.insecure_channel(served.grpc)
    traces = trace_storage_pb2_grpc.TraceReaderStub(channel)
    with pytest.raises(grpc.RpcError) as refused:
        traces.GetServices(trace_storage_pb2.GetServicesRequest())
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    answer = traces.GetServices(
        trace_storage_pb2.GetServicesRequest(),
        metadata=[("authorization", "Bearer reader-token")],
    )
    assert "travel-app" in answer.services
    channel.close()

"""Jaeger v2's remote-storage API (``jaeger.storage.v2``) over the database: Jaeger's UI, with
``jaeger_storage`` pointed at ``runspan serve`` through its ``grpc`` backend, reads every stored
run, whole, with no second store.

``TraceReader`` (``GetTraces``, ``GetServices``, ``GetOperations``, ``FindTraces``,
``FindTraceIDs``), ``DependencyReader`` (``GetDependencies``) and ``Capabilities`` (search
without a service, conditions on one span) are served; any other method,
``FindTraceSummaries`` among them, is ``UNIMPLEMENTED``, which Jaeger reads as "do it
yourself". Traces stream as the IDL asks: one trace per ``TracesData`` chunk, a large trace in
consecutive chunks, never an empty one. A run still running appears once it has ended.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NoReturn

import grpc
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.trace import ReadableSpan

from runspan.exporters.previews import previewed_span
from runspan.serve.jaeger import (
    capabilities_pb2,
    capabilities_pb2_grpc,
    dependency_storage_pb2,
    dependency_storage_pb2_grpc,
    trace_storage_pb2,
    trace_storage_pb2_grpc,
)
from runspan.storage import RunStore, StorageError
from runspan.storage.rebuild import Resources, stored_span
from runspan.storage.search import DEFAULT_SEARCH_DEPTH, TraceSearch

# Each value whole up to this many characters (Jaeger's UI renders every tag), then a preview.
DEFAULT_VALUE_CHARS = 64 * 1024
# Spans per TracesData chunk: a large trace streams in several, consecutive.
SPANS_PER_CHUNK = 500

_NS = 1_000_000_000


def _ns(timestamp: object) -> int | None:
    """A protobuf Timestamp as nanoseconds, None when unset."""
    seconds, nanos = getattr(timestamp, "seconds", 0), getattr(timestamp, "nanos", 0)
    return seconds * _NS + nanos if seconds or nanos else None


def _ms(duration: object) -> float | None:
    seconds, nanos = getattr(duration, "seconds", 0), getattr(duration, "nanos", 0)
    return (seconds * _NS + nanos) / 1e6 if seconds or nanos else None


def _text(value: trace_storage_pb2.AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return str(getattr(value, kind)) if kind else ""


def trace_search(query: trace_storage_pb2.TraceQueryParameters) -> TraceSearch:
    """Jaeger's query parameters as runspan's search."""
    return TraceSearch(
        service=query.service_name or None,
        operation=query.operation_name or None,
        attributes={pair.key: _text(pair.value) for pair in query.attributes},
        start_min_ns=_ns(query.start_time_min) if query.HasField("start_time_min") else None,
        start_max_ns=_ns(query.start_time_max) if query.HasField("start_time_max") else None,
        duration_min_ms=_ms(query.duration_min) if query.HasField("duration_min") else None,
        duration_max_ms=_ms(query.duration_max) if query.HasField("duration_max") else None,
        depth=query.search_depth or DEFAULT_SEARCH_DEPTH,
    )


class TraceChunks:
    """Stored traces as the spans and ``TracesData`` chunks readers are sent."""

    def __init__(self, store: RunStore, value_chars: int = DEFAULT_VALUE_CHARS) -> None:
        self.store = store
        self.value_chars = value_chars

    def spans(self, trace_ids: Sequence[str]) -> dict[str, list[ReadableSpan]]:
        """Each trace's ended runs as spans, values cut to ``value_chars``, by trace id."""
        resources = Resources()
        found: dict[str, list[ReadableSpan]] = {trace_id: [] for trace_id in trace_ids}
        for run in self.store.runs_of_traces(list(trace_ids)):
            if run.end_ns is not None:
                span = stored_span(run, resources(run.service_name))
                found[run.trace_id].append(previewed_span(span, self.value_chars))
        return found

    def chunks(self, trace_ids: Sequence[str]) -> Iterator[TracesData]:
        for spans in self.spans(trace_ids).values():
            for start in range(0, len(spans), SPANS_PER_CHUNK):
                encoded = encode_spans(spans[start : start + SPANS_PER_CHUNK])
                yield TracesData(resource_spans=encoded.resource_spans)


def _trace_id(raw: bytes, context: grpc.ServicerContext) -> str:
    if len(raw) != 16:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a trace_id is 16 bytes")
    return raw.hex()


def _storage_errors(context: grpc.ServicerContext, error: StorageError) -> NoReturn:
    context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
    raise AssertionError("abort raises")  # grpc's abort never returns


class TraceReader(trace_storage_pb2_grpc.TraceReaderServicer):
    def __init__(self, traces: TraceChunks) -> None:
        self._traces = traces

    def GetTraces(
        self, request: trace_storage_pb2.GetTracesRequest, context: grpc.ServicerContext
    ) -> Iterator[TracesData]:
        ids = list(dict.fromkeys(_trace_id(query.trace_id, context) for query in request.query))
        try:
            yield from self._traces.chunks(ids)
        except StorageError as error:
            _storage_errors(context, error)

    def GetServices(
        self, request: trace_storage_pb2.GetServicesRequest, context: grpc.ServicerContext
    ) -> trace_storage_pb2.GetServicesResponse:
        try:
            return trace_storage_pb2.GetServicesResponse(services=self._traces.store.services())
        except StorageError as error:
            _storage_errors(context, error)

    def GetOperations(
        self, request: trace_storage_pb2.GetOperationsRequest, context: grpc.ServicerContext
    ) -> trace_storage_pb2.GetOperationsResponse:
        try:
            found = self._traces.store.operations(request.service, request.span_kind or None)
        except StorageError as error:
            _storage_errors(context, error)
        return trace_storage_pb2.GetOperationsResponse(
            operations=[trace_storage_pb2.Operation(name=n, span_kind=k) for n, k in found]
        )

    def FindTraces(
        self, request: trace_storage_pb2.FindTracesRequest, context: grpc.ServicerContext
    ) -> Iterator[TracesData]:
        try:
            found = self._traces.store.find_traces(trace_search(request.query))
            yield from self._traces.chunks([trace_id for trace_id, _, _ in found])
        except StorageError as error:
            _storage_errors(context, error)

    def FindTraceIDs(
        self, request: trace_storage_pb2.FindTraceIDsRequest, context: grpc.ServicerContext
    ) -> trace_storage_pb2.FindTraceIDsResponse:
        try:
            found = self._traces.store.find_traces(trace_search(request.query))
        except StorageError as error:
            _storage_errors(context, error)
        response = trace_storage_pb2.FindTraceIDsResponse()
        for trace_id, start, end in found:
            item = response.trace_ids.add(trace_id=bytes.fromhex(trace_id))
            item.start.FromNanoseconds(start)
            item.end.FromNanoseconds(end)
        return response


class DependencyReader(dependency_storage_pb2_grpc.DependencyReaderServicer):
    def __init__(self, store: RunStore) -> None:
        self._store = store

    def GetDependencies(
        self,
        request: dependency_storage_pb2.GetDependenciesRequest,
        context: grpc.ServicerContext,
    ) -> dependency_storage_pb2.GetDependenciesResponse:
        since = _ns(request.start_time) if request.HasField("start_time") else None
        until = _ns(request.end_time) if request.HasField("end_time") else None
        try:
            found = self._store.dependencies(since, until)
        except StorageError as error:
            _storage_errors(context, error)
        return dependency_storage_pb2.GetDependenciesResponse(
            dependencies=[
                dependency_storage_pb2.Dependency(
                    parent=parent, child=child, call_count=calls, source="runspan"
                )
                for parent, child, calls in found
            ]
        )


class Capabilities(capabilities_pb2_grpc.CapabilitiesServicer):
    """What runspan's search does, for Jaeger's query service and UI: any service or none (so
    the UI may search across services), and every condition on one span."""

    def GetCapabilities(
        self, request: capabilities_pb2.GetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> capabilities_pb2.GetCapabilitiesResponse:
        search = capabilities_pb2.SearchCapabilities(
            without_service_name=True, same_span_conjunction=True
        )
        return capabilities_pb2.GetCapabilitiesResponse(search=search)


def add_jaeger_services(server: grpc.Server, traces: TraceChunks) -> None:
    """Serve Jaeger's TraceReader, DependencyReader and Capabilities on ``server``."""
    add_traces = trace_storage_pb2_grpc.add_TraceReaderServicer_to_server
    add_traces(TraceReader(traces), server)  # type: ignore[no-untyped-call]
    add_dependencies = dependency_storage_pb2_grpc.add_DependencyReaderServicer_to_server
    add_dependencies(DependencyReader(traces.store), server)  # type: ignore[no-untyped-call]
    add_capabilities = capabilities_pb2_grpc.add_CapabilitiesServicer_to_server
    add_capabilities(Capabilities(), server)  # type: ignore[no-untyped-call]

"""The gRPC side of ``runspan serve``: OTLP's ``TraceService/Export``, and Jaeger's
remote-storage reader services (:mod:`runspan.serve.jaeger_api`) on the same port.

Busy answers are ``UNAVAILABLE`` (OTLP's retryable status: the client's exporter backs off and
sends again); a request some of whose spans were refused gets OTLP's partial success.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from runspan.serve.auth import BearerToken
from runspan.serve.ingest import Busy, Ingest
from runspan.serve.jaeger_api import TraceChunks, add_jaeger_services

# The largest request accepted: the OTLP exporters' and Jaeger's default of 4 MiB.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        try:
            accepted = self._ingest.accept(request)
        except Busy as busy:
            context.abort(grpc.StatusCode.UNAVAILABLE, busy.reason)
        response = ExportTraceServiceResponse()
        if accepted.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=accepted.rejected, error_message=accepted.message
                )
            )
        return response


class _TokenInterceptor(grpc.ServerInterceptor):  # type: ignore[misc] # grpc is untyped
    """Refuses every call without the bearer token, before any work is done."""

    def __init__(self, token: BearerToken) -> None:
        self._token = token

        def refuse(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        metadata = dict(handler_call_details.invocation_metadata or ())
        if self._token.allows(metadata.get("authorization")):
            return continuation(handler_call_details)
        return self._refusal


def grpc_server(
    ingest: Ingest,
    token: BearerToken,
    address: str,
    *,
    traces: TraceChunks,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    workers: int = 16,
) -> tuple[grpc.Server, int]:
    """A started-ready (not started) gRPC server on ``address``, and the port it bound."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="runspan-serve-grpc"),
        interceptors=[_TokenInterceptor(token)] if token.required else [],
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_service = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
    add_service(_TraceService(ingest), server)  # type: ignore[no-untyped-call]
    add_jaeger_services(server, traces)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc's way of saying the port is taken or the address is wrong
        port = 0
    if port == 0:
        raise OSError(f"runspan serve could not listen on {address} (gRPC): is it in use?")
    return server, port

"""OTLP receivers for tests: a gRPC ``TraceService`` and an HTTP ``POST /v1/traces`` endpoint on
127.0.0.1, both decoding what arrives with ``opentelemetry-proto``, as Jaeger's would.

No Docker or Jaeger runs here, so these stand in for the receiving end: real sockets, the real
OTLP exporter on the other side, and the decoded protobuf kept for the test to look at.
"""

from __future__ import annotations

import gzip
import http.server
import socket
import ssl
import threading
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus


def any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


@dataclass
class ReceivedSpan:
    """One span as it arrived, decoded."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    service_name: str | None
    scope: str


def decode(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=ProtoSpan.SpanKind.Name(span.kind),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status=ProtoStatus.StatusCode.Name(span.status.code),
                        status_message=span.status.message,
                        attributes={kv.key: any_value(kv.value) for kv in span.attributes},
                        events=[
                            (
                                event.name,
                                event.time_unix_nano,
                                {kv.key: any_value(kv.value) for kv in event.attributes},
                            )
                            for event in span.events
                        ],
                        service_name=resource.get("service.name"),
                        scope=scope_spans.scope.name,
                    )
                )
    return spans


@dataclass
class Received:
    """What a receiver got: requests (decoded spans, headers, size on the wire)."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # the decompressed protobuf of each request
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Cleared, every request waits for it: a receiver that has stopped answering.
    answering: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.answering.set()

    def add(self, body: bytes, headers: dict[str, str]) -> None:
        self.answering.wait(60)
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.spans.extend(decode(request))
            self.headers.append(headers)
            self.sizes.append(len(body))
            self.raw.append(body)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(
        self, request: Any, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        headers = dict(context.invocation_metadata())
        self.received.add(request.SerializeToString(), headers)
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcReceiver:
    """An OTLP/gRPC receiver on 127.0.0.1; ``stop()`` and ``start()`` again on the same port."""

    protocol = "grpc"

    def __init__(self, tls: tuple[bytes, bytes] | None = None) -> None:
        self.received = Received()
        self.port = free_port()
        self._tls = tls  # (certificate chain PEM, private key PEM)
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            # Jaeger's and the Collector's default limit, so a batch over it fails here too.
            options=[("grpc.max_receive_message_length", 4 * 1024 * 1024)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceService(self.received), server
        )
        address = f"127.0.0.1:{self.port}"
        if self._tls:
            chain, key = self._tls
            server.add_secure_port(address, grpc.ssl_server_credentials([(key, chain)]))
        else:
            server.add_insecure_port(address)
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None


class HttpReceiver:
    """An OTLP/HTTP receiver (``POST /v1/traces``, protobuf) on 127.0.0.1."""

    protocol = "http/protobuf"

    def __init__(self, cert_files: tuple[str, str] | None = None) -> None:
        self.received = Received()
        self.port = free_port()
        self._cert_files = cert_files  # (certificate chain path, private key path) for TLS
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self._cert_files else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                received.add(body, {k.lower(): v for k, v in self.headers.items()})
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self._cert_files:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._cert_files)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

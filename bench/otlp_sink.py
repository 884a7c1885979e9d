"""An OTLP/gRPC receiver that accepts and discards, in a process of its own, so that what it
costs to receive spans is not counted against the process that sends them.

    python bench/otlp_sink.py PORT
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request: Any, context: Any) -> Any:
        return trace_service_pb2.ExportTraceServiceResponse()


@contextmanager
def running() -> Iterator[str]:
    """A sink in a process of its own for the duration of the block; yields its endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen(
        [sys.executable, __file__, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdin is not None
    assert sink.stdout is not None
    try:
        sink.stdout.readline()  # "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        sink.stdin.close()
        sink.wait(timeout=10)


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)
    server.add_insecure_port(f"127.0.0.1:{int(sys.argv[1])}")
    server.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop(grace=None)


if __name__ == "__main__":
    main()

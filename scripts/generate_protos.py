"""Regenerate runspan's gRPC modules from the .proto files in runspan/serve/jaeger/.

    python3 -m venv /tmp/protoc && /tmp/protoc/bin/pip install grpcio-tools==1.63.2 \
        opentelemetry-proto==1.35.0 "protobuf>=5.26.1,<6"
    /tmp/protoc/bin/python scripts/generate_protos.py

grpcio-tools 1.63.2 (protoc 26.1) is what opentelemetry-proto's own modules were made with: its
output loads on protobuf 5.26 and newer and grpcio 1.63 and newer, the versions runspan needs
anyway. The OpenTelemetry protos the Jaeger API imports (TracesData) are read from the installed
opentelemetry-proto package's descriptors, so no copy of them is needed here.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from opentelemetry.proto.trace.v1 import trace_pb2

ROOT = Path(__file__).resolve().parents[1]
PROTOS = sorted((ROOT / "runspan" / "serve" / "jaeger").glob("*.proto"))


def _descriptor_set() -> bytes:
    """The descriptors of trace.proto and everything it imports, as protoc's input."""
    found: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file_descriptor: object) -> None:
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)  # type: ignore[attr-defined]
        if proto.name in found:
            return
        for dependency in file_descriptor.dependencies:  # type: ignore[attr-defined]
            add(dependency)
        found[proto.name] = proto

    add(trace_pb2.DESCRIPTOR)
    return descriptor_pb2.FileDescriptorSet(file=list(found.values())).SerializeToString()


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        otel = Path(folder) / "otel.pb"
        otel.write_bytes(_descriptor_set())
        include = Path(protoc.__file__).parent / "_proto"
        args = [
            "protoc",
            f"--descriptor_set_in={otel}",
            f"-I{ROOT}",
            f"-I{include}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}",
            *(str(path.relative_to(ROOT)) for path in PROTOS),
        ]
        return protoc.main(args)


if __name__ == "__main__":
    sys.exit(main())

"""OTLP receivers on loopback, over gRPC and HTTP, with and without TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.exporters.receivers import GrpcReceiver, HttpReceiver

Receiver = GrpcReceiver | HttpReceiver


@pytest.fixture(params=["grpc", "http/protobuf"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """A running OTLP receiver, gRPC or HTTP, plain text."""
    made: Receiver = GrpcReceiver() if request.param == "grpc" else HttpReceiver()
    made.start()
    yield made
    made.stop()


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(certificate_authority: trustme.CA, tmp_path: Path) -> str:
    """The test CA's certificate as a PEM file, for the client to trust."""
    path = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(params=["grpc", "http/protobuf"])
def tls_receiver(
    request: pytest.FixtureRequest, certificate_authority: trustme.CA, tmp_path: Path
) -> Iterator[Receiver]:
    """A running OTLP receiver over TLS, with a certificate for 127.0.0.1 from the test CA."""
    server_cert = certificate_authority.issue_cert("127.0.0.1", "localhost")
    made: Receiver
    if request.param == "grpc":
        chain = b"".join(blob.bytes() for blob in server_cert.cert_chain_pems)
        made = GrpcReceiver(tls=(chain, server_cert.private_key_pem.bytes()))
    else:
        chain_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
        chain_path.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
        server_cert.private_key_pem.write_to_path(str(key_path))
        made = HttpReceiver(cert_files=(str(chain_path), str(key_path)))
    made.start()
    yield made
    made.stop()

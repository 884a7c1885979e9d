"""``runspan serve`` as users run it: the real command in a process of its own, on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pytest

from tests.support import RUNSPAN

_READY = re.compile(
    r"OTLP gRPC on (?P<host>[\d.]+):(?P<grpc>\d+).*?OTLP/HTTP on (?P<http>http://[\d.]+:\d+)/v1/traces"
)


@dataclass
class Served:
    """A running ``runspan serve``: its endpoints, and what it printed."""

    process: subprocess.Popen[str]
    grpc: str  # host:port
    http: str  # http://host:port
    stderr: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a service manager stops it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout)
        if self.reader is not None:
            self.reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return status


def _drain(stream: IO[str], lines: list[str]) -> None:
    lines.extend(iter(stream.readline, ""))


def start_serve(database_url: str, *args: str, env: dict[str, str] | None = None) -> Served:
    process = subprocess.Popen(
        [str(RUNSPAN), "serve", "--grpc-port", "0", "--http-port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUNSPAN_DATABASE_URL": database_url, **(env or {})},
    )
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"runspan serve exited: {''.join(lines)}")
        lines.append(line)
        found = _READY.search(line)
        if found:
            # Keep reading stderr so that the server never blocks on a full pipe.
            reader = threading.Thread(target=_drain, args=(process.stderr, lines), daemon=True)
            reader.start()
            return Served(process, f"{found['host']}:{found['grpc']}", found["http"], lines, reader)
    process.kill()
    raise AssertionError(f"runspan serve did not start: {''.join(lines)}")


@pytest.fixture
def serve(database_url: str) -> Iterator[Any]:
    """Starts ``runspan serve`` on the test's database; every server stops at the end, and
    must stop cleanly."""
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None, url: str | None = None) -> Served:
        served = start_serve(url or database_url, *args, env=env)
        started.append(served)
        return served

    yield start
    for served in started:
        assert served.stop() == 0, "".join(served.stderr)


def run_client(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A Python program in a process of its own (an app that exports over OTLP)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert done.returncode == 0, done.stderr
    return done

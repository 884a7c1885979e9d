"""A real uvicorn server, real FastAPI and httpx instrumentations, requests in flight together.

The app (tests/web/app.py) runs in its own process as production apps do: ``runspan.configure()``
at start-up, async and sync endpoints running a chain and a LangGraph agent, calls out over HTTP
after awaiting a model inside a lambda, a tool and a graph node. The server is stopped with
SIGTERM right after the last response, as a container is; the test then reads every span back
from the database and checks where each one nests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    database: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(tmp_path: Path, **env_vars: str) -> Server:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    database = tmp_path / "runs.db"
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNSPAN_"))}
    env |= {"RUNSPAN_DATABASE_URL": f"sqlite:///{database}", "WEB_APP_URL": url, **env_vars}
    command = [sys.executable, "-m", "uvicorn", "tests.web.app:app", "--host", "127.0.0.1"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, url, database, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server did not start: {log.read_text()}")
        try:
            httpx.get(f"{url}/ping", params={"at": "ready"}, timeout=1).raise_for_status()
            return server
        except httpx.TransportError:
            if time.monotonic() > deadline:
                _kill(server)
                raise AssertionError("the server did not answer within 60 s") from None
            time.sleep(0.1)


def _kill(server: Server) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = _start(tmp_path)
    yield started
    _kill(started)


async def _load(url: str, paths: list[str], in_flight: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(path: str) -> dict[str, Any]:
            async with gate:
                response = await client.get(path)
                response.raise_for_status()
                return dict(response.json())

        return await asyncio.gather(*(one(path) for path in paths))


def _spans(database: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            query = (
                "SELECT run_id, trace_id, span_id, parent_span_id, name, span_kind, status,"
                " start_ns, end_ns, attributes FROM runs"
            )
            rows = [dict(row) for row in connection.execute(text(query)).mappings()]
    finally:
        engine.dispose()
    for row in rows:
        attributes = row["attributes"]
        row["attributes"] = json.loads(attributes) if isinstance(attributes, str) else attributes
    return rows


def _called_from(span: dict[str, Any]) -> str | None:
    """Where an httpx call to /ping was made from: its ``at=`` query parameter."""
    attributes = span["attributes"] or {}
    url = str(attributes.get("url.full") or attributes.get("http.url") or "")
    return url.split("at=")[1] if span["span_kind"] == "client" and "at=" in url else None


class TestUnderUvicorn:
    def test_context_and_nesting_under_concurrency_and_runs_kept_after_sigterm(
        self, server: Server
    ) -> None:
        """80 requests, 20 in flight, on async and sync endpoints: after every await of a
        runnable the endpoint's current span is the request's; each call out nests under the
        run it was made in (or the request, from the endpoint); every ASGI "http send" span
        nests under its request; no span nests under a run it does not lie within; and after
        SIGTERM 0.1 s after the last response, every run is stored, finished."""
        paths = (
            [f"/chain/{n}" for n in range(30)]
            + [f"/sync/{n}" for n in range(30)]
            + [f"/agent/city{n}" for n in range(20)]
        )
        responses = asyncio.run(_load(server.url, paths, in_flight=20))
        time.sleep(0.1)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == -signal.SIGTERM  # uvicorn dies of it, as before
        log = server.log.read_text()
        assert "Failed to detach context" not in log
        assert "Traceback" not in log, log

        assert [r["kept"] for r in responses] == [True] * len(paths)
        spans = _spans(server.database)
        by_id = {(s["trace_id"], s["span_id"]): s for s in spans}

        def parent(span: dict[str, Any]) -> dict[str, Any]:
            found = by_id.get((span["trace_id"], span["parent_span_id"]))
            assert found is not None, f"{span['name']} has no stored parent"
            return found

        # Every run of every request is stored and finished.
        runs = [s for s in spans if s["run_id"] is not None]
        assert Counter(s["status"] for s in runs) == {"ok": len(runs)}
        requests = {
            s["trace_id"]: s["name"]
            for s in spans
            if s["span_kind"] == "server"
            and s["parent_span_id"] is None
            and s["name"] != "GET /ping"
        }
        assert sorted(requests.values()) == sorted(
            ["GET /chain/{n}"] * 30 + ["GET /sync/{n}"] * 30 + ["GET /agent/{city}"] * 20
        )
        per_request = Counter((requests[r["trace_id"]], r["trace_id"]) for r in runs)
        for endpoint in ("GET /chain/{n}", "GET /sync/{n}", "GET /agent/{city}"):
            counts = {n for (name, _), n in per_request.items() if name == endpoint}
            assert len(counts) == 1, f"{endpoint}: runs per request differ: {counts}"
        assert sum(per_request.values()) == len(runs)
        assert {n for (name, _), n in per_request.items() if name != "GET /agent/{city}"} == {6}

        # Calls out nest under the run they were made in, or under the request.
        expected_parent = {
            "lambda": {"check_answer", "check_answer_sync"},
            "tool": {"execute_tool lookup"},
            "node": {"research"},
        }
        made_from: Counter[str] = Counter()
        for span in spans:
            at = _called_from(span)
            if at is None or at == "ready":
                continue
            made_from[at] += 1
            above = parent(span)
            if at == "endpoint":
                assert above["span_kind"] == "server", f"endpoint call under {above['name']}"
            else:
                assert above["name"] in expected_parent[at], f"{at} call under {above['name']}"
        assert made_from == {"lambda": 60, "tool": 20, "node": 20, "endpoint": 80}

        for span in spans:
            if span["name"].endswith("http send"):
                assert parent(span)["span_kind"] == "server", span["name"]
            # Nothing that is not a run nests under a run it does not lie within.
            if span["run_id"] is None and span["parent_span_id"] is not None:
                above = parent(span)
                if above["run_id"] is not None:
                    assert above["start_ns"] <= span["start_ns"], span["name"]
                    assert span["end_ns"] <= above["end_ns"], (
                        f"{span['name']} ended after the run {above['name']} it nests under"
                    )

    def test_the_readmes_lifespan_keeps_runs_where_the_app_handles_sigterm(
        self, tmp_path: Path
    ) -> None:
        """An app whose own SIGTERM handler ends the process with no exit handlers keeps its
        runs with the README's lifespan, which flushes after uvicorn's graceful shutdown."""
        server = _start(tmp_path, WEB_APP_SIGTERM="own")
        try:
            responses = asyncio.run(_load(server.url, [f"/chain/{n}" for n in range(10)], 10))
            time.sleep(0.1)
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=60) == 0  # the app's handler, not runspan's
        finally:
            _kill(server)
        assert [r["kept"] for r in responses] == [True] * 10
        runs = [s for s in _spans(server.database) if s["run_id"] is not None]
        assert Counter(s["status"] for s in runs) == {"ok": 60}

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util._once import Once

import runspan
import runspan.default_provider
import runspan.provider
import runspan.tracer.settings
from runspan.storage import upgrade_database
from runspan.testing import SpanCapture
from runspan.testing import postgres as postgres_server


def pytest_configure(config: pytest.Config) -> None:
    # Started in the background by a shell without job control (`cmd &` in a script, nohup),
    # the suite inherits SIGINT ignored, and so would the commands it starts: the tests that
    # end `runspan runs --follow` with Ctrl-C would wait on them for ever. Handled here, SIGINT
    # is back to its default in every command the tests run.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers", "logs_warnings: the test provokes warnings on purpose and checks them itself"
    )
    config.addinivalue_line(
        "markers", "faults: the fault suite (tests/faults): outages, crashes, hostile input"
    )


@pytest.fixture(autouse=True)
def context_restored_and_nothing_logged(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """After every scenario the thread's OpenTelemetry context is what it was before, and
    nothing (no "Failed to detach context", no runspan failure) was logged as a warning."""
    caplog.set_level(logging.WARNING)
    before = otel_context.get_current()
    yield
    assert otel_context.get_current() is before, "the test left an OpenTelemetry context behind"
    if request.node.get_closest_marker("logs_warnings") is None:
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not warnings, [r.getMessage() for r in warnings]


@pytest.fixture
def capture() -> Iterator[SpanCapture]:
    spans = SpanCapture()
    yield spans
    spans.provider.shutdown()


@pytest.fixture
def collector() -> RunCollectorCallbackHandler:
    """LangChain's own record of the run tree, to compare the spans with."""
    return RunCollectorCallbackHandler()


@pytest.fixture
def fresh_globals(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A process with no global tracer provider, no runspan configuration, no instrument(), and
    runspan's default database in a temporary folder."""
    monkeypatch.setenv("RUNSPAN_DATABASE_URL", f"sqlite:///{tmp_path / 'runspan.db'}")
    for name in list(os.environ):  # the machine's own OTLP settings must not leak into tests
        if name.startswith(("OTEL_EXPORTER_OTLP_", "OTEL_TRACES_EXPORTER", "RUNSPAN_OTLP_")):
            monkeypatch.delenv(name)

    sigterm = signal.getsignal(signal.SIGTERM)

    def reset() -> None:
        signal.signal(signal.SIGTERM, sigterm)  # configure() may have handled it
        # OpenTelemetry allows setting the global provider once per process; tests need more.
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None
        if runspan.provider._provider is not None:
            runspan.provider._provider.shutdown()
        runspan.provider._provider = None
        fallen_back = runspan.default_provider.default_provider
        if fallen_back.provider is not None:
            fallen_back.provider.shutdown()
        fallen_back.provider = None
        runspan.tracer.settings.set_default_tracer_settings(runspan.TracerSettings())
        runspan.uninstrument()

    reset()
    yield
    reset()


# Every storage test runs on SQLite and on a real PostgreSQL. The PostgreSQL cluster is started
# once per session (tests/postgres_server.py) and each test gets a database of its own. Without
# PostgreSQL binaries the PostgreSQL cases skip with the reason; under CI (CI=true) that is a
# failure instead, so CI can never pass without them.


@pytest.fixture(scope="session")
def postgres() -> Iterator[postgres_server.PostgresServer]:
    try:
        server = postgres_server.start()
    except FileNotFoundError as missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {missing}")
        pytest.skip(f"PostgreSQL tests skipped: {missing}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    server: postgres_server.PostgresServer = request.getfixturevalue("postgres")
    url = postgres_server.create_database(server.url)
    yield url
    postgres_server.drop_database(server.url, url)


@pytest.fixture
def read_url(request: pytest.FixtureRequest, database_url: str) -> str:
    """What ``runspan sql`` and ``RunStore.sql`` read through: on PostgreSQL a role that can only
    read (made by ``runspan db create-reader`` once the schema exists); on SQLite the file."""
    if database_url.startswith("sqlite"):
        return database_url
    upgrade_database(database_url)
    server: postgres_server.PostgresServer = request.getfixturevalue("postgres")
    return postgres_server.add_reader(server.url, database_url)

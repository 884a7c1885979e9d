"""Every storage test runs on SQLite and on a real PostgreSQL.

The PostgreSQL cluster is started once per session (tests/postgres_server.py) and each test
gets a database of its own. Without PostgreSQL binaries the PostgreSQL cases skip with the
reason; under CI (``CI=true``) that is a failure instead, so CI can never pass without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.storage import RunStore, StorageSpanProcessor
from tests import postgres_server


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


@dataclass
class Stored:
    """A provider writing into a database, a handler on it, and a store reading it back."""

    url: str
    provider: TracerProvider
    processor: StorageSpanProcessor
    handler: TracingCallbackHandler

    def flush(self) -> None:
        assert self.provider.force_flush(), "the writer did not get everything into the database"

    def store(self) -> RunStore:
        self.flush()
        return RunStore(self.url)


@pytest.fixture
def stored(database_url: str) -> Iterator[Stored]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "test-app"}), id_generator=RunIdGenerator()
    )
    processor = StorageSpanProcessor(database_url, schedule_delay_millis=60_000)
    provider.add_span_processor(processor)
    yield Stored(
        database_url, provider, processor, TracingCallbackHandler(tracer_provider=provider)
    )
    provider.shutdown()

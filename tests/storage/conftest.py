"""A provider writing into a database (SQLite or PostgreSQL: ``database_url`` in
tests/conftest.py), with a handler on it and a store reading it back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.storage import RunStore, StorageSpanProcessor
from runspan.storage.engine import create_writer_engine, database_url_from


def migrate_down(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision``, as Alembic's downgrade does."""
    from alembic import command

    from runspan.storage.migrate import _config, _migration_engine

    engine = create_writer_engine(database_url_from(url))
    migrator = _migration_engine(engine)
    try:
        with migrator.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        migrator.dispose()
        engine.dispose()


@dataclass
class Stored:
    """A provider writing into a database, a handler on it, and a store reading it back."""

    url: str
    read_url: str  # on PostgreSQL, a role that can only read (what RunStore.sql needs)
    provider: TracerProvider
    processor: StorageSpanProcessor
    handler: TracingCallbackHandler

    def flush(self) -> None:
        assert self.provider.force_flush(), "the writer did not get everything into the database"

    def store(self) -> RunStore:
        self.flush()
        return RunStore(self.read_url)


@pytest.fixture
def stored(database_url: str, read_url: str) -> Iterator[Stored]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "test-app"}), id_generator=RunIdGenerator()
    )
    processor = StorageSpanProcessor(database_url, schedule_delay_millis=60_000)
    provider.add_span_processor(processor)
    yield Stored(
        database_url,
        read_url,
        provider,
        processor,
        TracingCallbackHandler(tracer_provider=provider),
    )
    provider.shutdown()

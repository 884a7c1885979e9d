"""Faults of the database: PostgreSQL going away mid-run, a bounded buffer overflowing, the
database down at start-up; and several processes (or forked ones) writing one database."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.storage import RunStore, SqlSpanExporter, StorageSpanProcessor
from runspan.testing import postgres as postgres_server
from tests.storage.conftest import Stored


@pytest.fixture
def own_postgres(
    postgres: postgres_server.PostgresServer,
) -> Iterator[postgres_server.PostgresServer]:
    """A PostgreSQL cluster of this test's own, which it may stop and start."""
    if postgres.data_dir is None:
        pytest.skip("stopping the server needs a cluster the tests started themselves")
    server = postgres_server.start()
    yield server
    server.stop()


def _count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM runs")).scalar_one())
    finally:
        engine.dispose()


class TestDatabaseDown:
    @pytest.mark.logs_warnings
    def test_runs_ended_while_postgres_was_down_arrive_when_it_is_back(
        self, own_postgres: postgres_server.PostgresServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the server stopped mid-run the chain runs and returns as usual; the rows wait
        in the buffer and are all written once the server is back. The outage is logged once,
        without the URL's password (the test server trusts local users, so any works)."""
        url = (
            make_url(postgres_server.create_database(own_postgres.url))
            .set(password="s3cret-pw")
            .render_as_string(hide_password=False)
        )
        provider = TracerProvider(id_generator=RunIdGenerator())
        processor = StorageSpanProcessor(url, schedule_delay_millis=60_000)
        provider.add_span_processor(processor)
        handler = TracingCallbackHandler(tracer_provider=provider)
        chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
        try:
            assert chain.invoke(1, config={"callbacks": [handler]}) == 4
            assert provider.force_flush()
            assert _count(url) == 3

            own_postgres.halt()
            results = [chain.invoke(i, config={"callbacks": [handler]}) for i in range(50)]
            assert results == [(i + 1) * 2 for i in range(50)]
            assert not provider.force_flush()  # cannot be in the database yet
            assert processor.exporter.buffered_rows == 150
            assert processor.exporter.dropped_rows == 0

            own_postgres.resume()
            assert provider.force_flush()
            assert _count(url) == 3 + 150
        finally:
            provider.shutdown()
        outage = [r for r in caplog.records if "cannot write to" in r.getMessage()]
        assert len(outage) == 1
        assert "***" in outage[0].getMessage()
        assert not [r for r in caplog.records if "s3cret-pw" in r.getMessage()]

    @pytest.mark.logs_warnings
    def test_rows_beyond_the_buffer_are_counted_and_logged(
        self, own_postgres: postgres_server.PostgresServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A long outage fills the bounded buffer: the oldest rows are dropped, the number is
        logged, and the newest rows arrive when the database is back."""
        url = postgres_server.create_database(own_postgres.url)
        exporter = SqlSpanExporter(url, max_buffered_rows=10)
        provider = TracerProvider(id_generator=RunIdGenerator())
        provider.add_span_processor(
            StorageSpanProcessor(exporter=exporter, schedule_delay_millis=60_000)
        )
        handler = TracingCallbackHandler(tracer_provider=provider)
        try:
            own_postgres.halt()
            for i in range(25):
                RunnableLambda(lambda x: x, name=f"run-{i}").invoke(
                    i, config={"callbacks": [handler]}
                )
            assert not provider.force_flush()
            assert exporter.buffered_rows == 10
            assert exporter.dropped_rows == 15
            own_postgres.resume()
            assert provider.force_flush()
        finally:
            provider.shutdown()
        with RunStore(url) as store:
            names = sorted(run.name for run in store.runs(limit=100))
        assert names == sorted(f"run-{i}" for i in range(15, 25))
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert len(dropped) == 2  # when it happens, and the tally when the database is back
        assert "dropped 15 rows" in dropped[0]
        assert "10 buffered rows, 15 rows were dropped" in dropped[1]

    @pytest.mark.logs_warnings
    def test_a_database_down_at_start_up_does_not_stop_the_app(
        self, own_postgres: postgres_server.PostgresServer
    ) -> None:
        """If the database is unreachable when the writer is made, it warns instead of
        raising; the schema is created and the runs written once the database is up."""
        url = postgres_server.create_database(own_postgres.url)
        own_postgres.halt()
        provider = TracerProvider(id_generator=RunIdGenerator())
        provider.add_span_processor(StorageSpanProcessor(url, schedule_delay_millis=60_000))
        handler = TracingCallbackHandler(tracer_provider=provider)
        try:
            assert RunnableLambda(lambda x: x).invoke(7, config={"callbacks": [handler]}) == 7
            assert not provider.force_flush()
            own_postgres.resume()
            assert provider.force_flush()
        finally:
            provider.shutdown()
        assert _count(url) == 1


_WRITER = textwrap.dedent(
    """
    import sys
    from langchain_core.runnables import RunnableLambda
    import runspan

    runspan.configure(database_url=sys.argv[1], service_name=sys.argv[2])
    handler = runspan.TracingCallbackHandler()
    step = RunnableLambda(lambda x: x, name=sys.argv[2])
    for i in range(int(sys.argv[3])):
        step.invoke(i, config={"callbacks": [handler]})
    assert runspan.flush()
    runspan.shutdown()
    """
)


class TestManyProcesses:
    def test_three_processes_write_one_sqlite_file(self, tmp_path: Path) -> None:
        """Three processes, each 1,000 runs, all start at once on a new SQLite file: the
        schema is created once and every run is stored."""
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        script = tmp_path / "writer.py"
        script.write_text(_WRITER)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        workers = [
            subprocess.Popen(
                [sys.executable, str(script), url, f"proc-{n}", "1000"],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(3)
        ]
        deadline = time.monotonic() + 240
        for worker in workers:
            _, err = worker.communicate(timeout=max(1, deadline - time.monotonic()))
            assert worker.returncode == 0, err
            assert "WARNING" not in err, err
            assert "ERROR" not in err, err
        with RunStore(url) as store:
            result = store.sql("SELECT name, count(*) FROM runs GROUP BY name ORDER BY name")
            traces = store.sql("SELECT count(*) FROM traces").rows[0][0]
        assert result.rows == [("proc-0", 1000), ("proc-1", 1000), ("proc-2", 1000)]
        assert traces == 3000


class TestFork:
    @pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
    def test_a_forked_child_writes_through_connections_of_its_own(self, stored: Stored) -> None:
        """A pre-forking server configures runspan, then forks workers: each child's runs are
        stored, and the parent's connection keeps working after the child exits."""
        step = RunnableLambda(lambda x: x, name="before fork")
        step.invoke(1, config={"callbacks": [stored.handler]})
        stored.flush()
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            code = 1
            try:
                RunnableLambda(lambda x: x, name="in child").invoke(
                    2, config={"callbacks": [stored.handler]}
                )
                code = 0 if stored.provider.force_flush() else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        RunnableLambda(lambda x: x, name="after fork").invoke(
            3, config={"callbacks": [stored.handler]}
        )
        with stored.store() as store:
            names = sorted(run.name for run in store.runs())
        assert names == ["after fork", "before fork", "in child"]

"""Migrations, schema checks and database settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from langchain_core.runnables import RunnableLambda
from sqlalchemy import create_engine, inspect, make_url, select, text

import runspan
from runspan.storage import (
    ConfigurationError,
    DatabaseNotFoundError,
    RunStore,
    SchemaError,
    SqlSpanExporter,
    upgrade_database,
)
from runspan.storage.engine import create_writer_engine, database_url_from
from runspan.storage.migrate import VERSION_TABLE, head_revision, upgrade
from runspan.storage.records import RunFilter, runs_v
from runspan.storage.rollups import HOUR_NS, Rollups
from runspan.storage.schema import declare_partial_indexes, declared, metadata, runs
from runspan.storage.upsert import write_rows
from runspan.testing import postgres as postgres_server
from tests.storage.test_retention import NOW, trace_rows
from tests.support import runspan_cli

_VIEWS = {"runs_v", "traces_v", "llm_calls"}


class TestMigrations:
    def test_an_empty_database_is_migrated_and_a_rerun_changes_nothing(
        self, database_url: str
    ) -> None:
        """`runspan db upgrade` creates tables, views and seeded prices; running it again is a
        no-op at the same version."""
        assert upgrade_database(database_url) == head_revision()
        engine = create_engine(database_url)
        with engine.connect() as connection:
            inspector = inspect(connection)
            assert {"runs", "traces", "model_prices", VERSION_TABLE} <= set(
                inspector.get_table_names()
            )
            assert set(inspector.get_view_names()) >= _VIEWS
            indexes = {index["name"] for index in inspector.get_indexes("runs")}
            assert {
                "ix_runs_parent_run_id",
                "ix_runs_name_start_day_status",
                "ix_runs_running",
            } <= indexes
            prices = connection.execute(text("SELECT count(*) FROM model_prices")).scalar_one()
        assert prices >= 4
        assert upgrade_database(database_url) == head_revision()
        with engine.connect() as connection:
            again = connection.execute(text("SELECT count(*) FROM model_prices")).scalar_one()
        engine.dispose()
        assert again == prices

    def test_the_migrations_make_the_schema_the_code_declares(self, database_url: str) -> None:
        """Alembic's autogenerate, which developers use for the next revision, finds nothing to
        change: every table, column, index and constraint the code declares (the partial
        indexes included) is what the migrations made."""
        upgrade_database(database_url)
        declare_partial_indexes()
        engine = create_engine(database_url)
        with engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(
                    connection, opts={"version_table": VERSION_TABLE, "include_object": declared}
                ),
                metadata,
            )
        engine.dispose()
        assert differences == []

    def test_a_database_at_an_older_version_is_migrated_with_its_runs(
        self, database_url: str
    ) -> None:
        """A database made by the first schema keeps its runs through the upgrade the writer
        does on first use, and readers see the new version."""
        engine = create_writer_engine(database_url_from(database_url))
        upgrade(engine, "0001")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO runs (trace_id, span_id, name, span_kind, status, start_ns,"
                    " end_ns) VALUES ('ab', 'cd', 'old run', 'internal', 'ok', 1, 2)"
                )
            )
        engine.dispose()
        with pytest.raises(SchemaError, match="runspan db upgrade"):
            RunStore(database_url)
        SqlSpanExporter(database_url).shutdown()  # the writer migrates on first use
        with RunStore(database_url) as store:
            (old,) = store.runs()
            assert old.name == "old run"
            assert [run.name for run in store.ended_runs(since=1, until=2)] == ["old run"]
        reader = create_engine(database_url)
        with reader.connect() as connection:
            indexes = {index["name"] for index in inspect(connection).get_indexes("runs")}
        reader.dispose()
        assert "ix_runs_end_ns" in indexes

    def test_revision_0003_fills_the_new_columns_from_what_older_rows_hold(
        self, database_url: str
    ) -> None:
        """Runs written before revision 0003 get their unfinished reason (from their
        attributes) and LangGraph node (from their metadata) as columns, and the views show
        the new columns on both databases."""
        engine = create_writer_engine(database_url_from(database_url))
        upgrade(engine, "0002")
        insert = text(
            "INSERT INTO runs (trace_id, span_id, name, span_kind, status, start_ns, end_ns,"
            " attributes, metadata) VALUES ('ab', :span, :name, 'internal', :status, 1, 2,"
            " :attributes, :metadata)"
        )
        with engine.begin() as connection:
            connection.execute(
                insert,
                [
                    {
                        "span": "01",
                        "name": "stream step",
                        "status": "unfinished",
                        "attributes": '{"runspan.unfinished": true,'
                        ' "runspan.unfinished.reason": "root_ended"}',
                        "metadata": None,
                    },
                    {
                        "span": "02",
                        "name": "agent",
                        "status": "ok",
                        "attributes": "{}",
                        "metadata": '{"langgraph_node": "agent", "langgraph_step": 1}',
                    },
                ],
            )
        engine.dispose()
        SqlSpanExporter(database_url).shutdown()  # the writer migrates on first use
        with RunStore(database_url) as store:
            runs = {run.name: run for run in store.runs()}
        engine = create_engine(database_url)
        with engine.connect() as connection:
            query = text("SELECT unfinished_reason, langgraph_node FROM runs_v")
            views = [tuple(row) for row in connection.execute(query)]
        engine.dispose()
        assert runs["stream step"].unfinished_reason == "root_ended"
        assert runs["stream step"].langgraph_node is None
        assert runs["agent"].langgraph_node == "agent"
        assert runs["agent"].unfinished_reason is None
        assert sorted(views, key=str) == sorted([("root_ended", None), (None, "agent")], key=str)

    def test_the_writer_creates_the_schema_on_first_use(self, database_url: str) -> None:
        """A new database needs no set-up step: the writer migrates it."""
        SqlSpanExporter(database_url).shutdown()
        with RunStore(database_url) as store:
            assert store.runs() == []

    def test_a_reader_on_an_unmigrated_database_says_what_to_run(self, database_url: str) -> None:
        """Reading never changes the schema: an empty database is an error naming the fix."""
        if database_url.startswith("sqlite"):
            create_engine(database_url).connect().close()  # an empty file
        with pytest.raises(SchemaError, match="runspan db upgrade"):
            RunStore(database_url)

    def test_a_database_from_a_newer_runspan_is_refused_clearly(self, database_url: str) -> None:
        """A schema version this runspan does not know means a newer runspan wrote it."""
        upgrade_database(database_url)
        engine = create_engine(database_url)
        with engine.begin() as connection:
            connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00d'"))
        engine.dispose()
        with pytest.raises(SchemaError, match="newer runspan"):
            RunStore(database_url)
        with pytest.raises(SchemaError, match="newer runspan"):
            upgrade_database(database_url)

    def test_a_foreign_runs_table_is_never_touched(self, database_url: str) -> None:
        """A database whose 'runs' table is someone else's is refused, not altered."""
        engine = create_engine(database_url)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE runs (id INTEGER PRIMARY KEY, what TEXT)"))
        engine.dispose()
        with pytest.raises(SchemaError, match="not runspan's"):
            upgrade_database(database_url)
        with pytest.raises(SchemaError, match="another application's database"):
            RunStore(database_url)


class TestSettings:
    def test_sqlite_is_set_up_for_several_writers(self, tmp_path: Path) -> None:
        """Every writer connection to SQLite uses WAL, synchronous=NORMAL and a busy timeout."""
        engine = create_writer_engine(database_url_from(f"sqlite:///{tmp_path / 'x.db'}"))
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        engine.dispose()

    def test_sqlite_reads_the_newest_roots_by_start_time(self, tmp_path: Path) -> None:
        """`runspan runs --roots` reads runs newest first until it has enough: the index of
        parent run ids holds no roots for SQLite's planner to take for `IS NULL` (with them it
        read and sorted every root of the history); a run's children are found through it."""
        url = f"sqlite:///{tmp_path / 'x.db'}"
        upgrade_database(url)
        roots = (
            select(runs_v.c.run_id)
            .where(*RunFilter(roots_only=True).conditions())
            .order_by(runs_v.c.start_ns.desc())
            .limit(50)
        )
        children = select(runs.c.run_id).where(runs.c.parent_run_id == "a-run-id")
        engine = create_engine(url)
        with engine.connect() as connection:

            def plan(query: Any) -> str:
                sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
                return " ".join(
                    row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
                )

            assert "ix_runs_parent_run_id" not in plan(roots)
            assert "ix_runs_start_ns" in plan(roots)
            assert "ix_runs_parent_run_id" in plan(children)
        engine.dispose()

    def test_the_url_comes_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """RUNSPAN_DATABASE_URL is used when no URL is given; the default is runspan.db."""
        monkeypatch.setenv("RUNSPAN_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
        assert database_url_from(None).database == str(tmp_path / "env.db")
        monkeypatch.delenv("RUNSPAN_DATABASE_URL")
        assert database_url_from(None).render_as_string() == "sqlite:///runspan.db"

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("mysql://u:hunter2@db/runs", "SQLite or PostgreSQL"),
            ("postgresql+asyncpg://u:hunter2@db/runs", "psycopg"),
            ("not a url:hunter2@", "not a database URL"),
            ("sqlite:////no/such/folder/runs.db", "does not exist"),
        ],
    )
    def test_bad_urls_fail_early_without_the_password(self, url: str, expected: str) -> None:
        """A URL runspan cannot use is refused when the writer is made, saying what works,
        and the password is never in the message."""
        with pytest.raises(ConfigurationError, match=expected) as raised:
            SqlSpanExporter(url)
        assert "hunter2" not in str(raised.value)

    def test_reading_a_missing_sqlite_file_does_not_create_it(self, tmp_path: Path) -> None:
        """`runspan runs` on a path with no database says so and leaves no file behind."""
        path = tmp_path / "missing.db"
        with pytest.raises(DatabaseNotFoundError, match="no runspan database"):
            RunStore(f"sqlite:///{path}")
        assert not path.exists()

    def test_a_corrupt_file_is_a_clear_error(self, tmp_path: Path) -> None:
        """A file that is not a SQLite database is reported as such."""
        path = tmp_path / "junk.db"
        path.write_bytes(b"this is not a database" * 100)
        with pytest.raises(SchemaError, match="not a SQLite database file"):
            RunStore(f"sqlite:///{path}")


class TestConfigure:
    def test_configure_stores_runs_in_the_default_database(
        self, fresh_globals: None, tmp_path: Path
    ) -> None:
        """runspan.configure() with no database argument writes to RUNSPAN_DATABASE_URL (the
        fixture's temporary file), and flush() returns when the runs are there."""
        runspan.configure(service_name="cfg")
        RunnableLambda(lambda x: x, name="stored").invoke(
            1, config={"callbacks": [runspan.TracingCallbackHandler()]}
        )
        assert runspan.flush()
        with RunStore(f"sqlite:///{tmp_path / 'runspan.db'}") as store:
            (run,) = store.runs()
        assert (run.name, run.service_name, run.status) == ("stored", "cfg", "ok")

    def test_storage_can_be_switched_off(self, fresh_globals: None, tmp_path: Path) -> None:
        """configure(storage=False) creates no database."""
        runspan.configure(storage=False)
        RunnableLambda(lambda x: x).invoke(
            1, config={"callbacks": [runspan.TracingCallbackHandler()]}
        )
        assert runspan.flush()
        assert not (tmp_path / "runspan.db").exists()

    def test_a_bad_database_url_fails_configure(self, fresh_globals: None) -> None:
        """A bad URL is an error from configure(), before any chain runs."""
        with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
            runspan.configure(database_url="oracle://scott:tiger@db/runs")
        assert runspan.configured_provider() is None


def test_a_postgresql_database_without_temporary_objects_is_migrated(
    postgres: postgres_server.PostgresServer,
) -> None:
    """A hardened database may deny its roles temporary objects: `runspan db upgrade` still
    makes every revision, as a role that may only connect and create in its schema."""
    admin = postgres_server.create_database(postgres.url, owner=None)
    name = make_url(admin).database
    role = f"migrator_{name}"[:63]
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for statement in (
            f'CREATE ROLE "{role}" LOGIN',
            f'REVOKE TEMPORARY ON DATABASE "{name}" FROM PUBLIC',
            f'GRANT CONNECT, CREATE ON DATABASE "{name}" TO "{role}"',
            f'GRANT ALL ON SCHEMA public TO "{role}"',
        ):
            connection.execute(text(statement))
    url = make_url(admin).set(username=role).render_as_string(hide_password=False)
    try:
        done = runspan_cli(url, "db", "upgrade")
        assert done.returncode == 0, done.stderr
        assert f"is at schema {head_revision()}" in done.stdout
    finally:
        engine.dispose()
        postgres_server.drop_database(postgres.url, admin)
        server = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            connection.execute(text(f'DROP ROLE "{role}"'))
        server.dispose()


def test_an_upgrade_by_an_administrator_leaves_every_table_to_the_writers_role(
    postgres: postgres_server.PostgresServer,
) -> None:
    """The writers' role owns runspan's tables; an administrator runs `runspan db upgrade` from
    revision 0016 (docs/storage.md asks for it before revision 0018's long copy). What the
    revisions make belongs to the writers' role, which then writes and rolls up as before. The
    reading role, which cannot act as the owner, is told who can upgrade."""
    url = postgres_server.create_database(postgres.url)  # owned by the writers' role
    admin_url = make_url(postgres.url).set(database=make_url(url).database)
    bystander = f"bystander_{admin_url.database}"[:63]
    server = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        owner = create_engine(url)
        upgrade(owner, "0016")
        owner.dispose()
        with server.connect() as connection:  # sees runspan's version, acts as no one else
            connection.execute(text(f'CREATE ROLE "{bystander}" LOGIN'))
            connection.execute(text(f'GRANT SELECT ON runspan_schema_version TO "{bystander}"'))
        refused = runspan_cli(
            admin_url.set(username=bystander).render_as_string(hide_password=False),
            "db",
            "upgrade",
        )
        assert refused.returncode == 1
        assert "run `runspan db upgrade` as 'runspan_app'" in refused.stderr
        done = runspan_cli(admin_url.render_as_string(hide_password=False), "db", "upgrade")
        assert done.returncode == 0, done.stderr
        admin = create_engine(admin_url)
        with admin.connect() as connection:
            others = connection.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
                    " AND c.relkind IN ('r', 'p', 'v', 'S')"
                    " AND pg_get_userbyid(c.relowner) <> 'runspan_app'"
                )
            ).scalars()
            assert list(others) == []
        admin.dispose()
        writer = create_writer_engine(database_url_from(url))
        with writer.begin() as connection:
            write_rows(connection, trace_rows(NOW - 2 * HOUR_NS))
        assert Rollups().visit(writer, NOW)  # slices, hours: tables made by the upgrade
        writer.dispose()
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{bystander}"'))
            connection.execute(text(f'DROP ROLE "{bystander}"'))
        server.dispose()
        postgres_server.drop_database(postgres.url, url)


def test_the_revisions_read_without_alembic_are_alembics() -> None:
    """Readers check the version against the revision files' names (Alembic is slow to import):
    those are exactly the revisions Alembic walks, and its head is theirs."""
    from alembic.script import ScriptDirectory

    from runspan.storage.migrate import _config, revisions

    scripts = ScriptDirectory.from_config(_config())
    walked = sorted(script.revision for script in scripts.walk_revisions())
    assert revisions() == walked
    assert head_revision() == scripts.get_current_head()

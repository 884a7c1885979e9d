"""`runspan sql` on PostgreSQL cannot write, whatever text it is given: against a real server,
through the real command, as a role that can only read, and refused as any other role.

After every hostile statement the rows, the schema, the settings (of the database, of the
roles, and of a new session) and the files a statement could have written are as they were,
and a session of the application's own role is still alive.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from runspan.testing import postgres as postgres_server

_RUNSPAN = Path(sys.executable).parent / "runspan"

# The strings and their variants: several statements, ending the transaction, COPY,
# settings, DO blocks, and functions that act outside the database.
HOSTILE = [
    "COMMIT; BEGIN READ WRITE; DELETE FROM runs; COMMIT; SELECT 1",
    "commit;begin read write;delete from runs;commit;select 1",
    "SELECT 1; SELECT 2",
    "select 1 ;\n delete from runs",
    "TABLE runs; DELETE FROM runs",
    "VALUES (1); TRUNCATE runs",
    "/* hello */ COMMIT",
    "-- a note\nCOMMIT",
    "ROLLBACK; DELETE FROM runs",
    "BEGIN READ WRITE",
    "END",
    "COPY (SELECT 1) TO '{dir}/copy.txt'",
    "copy (select 1) to '{dir}/copy.txt'",
    "/* a /* nested */ comment */ COPY runs TO '{dir}/runs.csv'",
    "  \t\n(COPY (SELECT 1) TO '{dir}/paren.txt')",
    "COPY (SELECT 1) TO PROGRAM 'touch {dir}/program'",
    "SET default_transaction_read_only = off",
    "set session characteristics as transaction read write",
    "SET ROLE NONE",
    "RESET ALL",
    "SELECT set_config('transaction_read_only', 'off', true)",
    "DO $$ BEGIN DELETE FROM runs; END $$",
    "do $$ begin execute 'COPY (SELECT 1) TO ''{dir}/do.txt'''; end $$",
    "DO $$ BEGIN COMMIT; END $$",
    "CALL nothing()",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT lo_export(lo_from_bytea(0, 'x'), '{dir}/lo.txt')",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_reload_conf()",
    "SELECT dblink_exec('dbname=postgres', 'DELETE FROM runs')",
    "CREATE EXTENSION dblink",
    "EXPLAIN ANALYZE DELETE FROM runs",
    "WITH doomed AS (DELETE FROM runs RETURNING 1) SELECT count(*) FROM doomed",
    "SELECT * FROM runs FOR UPDATE",
    "SELECT nextval(pg_get_serial_sequence('runs', 'id'))",
    "ALTER ROLE CURRENT_USER SET default_transaction_read_only = off",
    "GRANT ALL ON runs TO PUBLIC",
]
# Reads that PostgreSQL lets run in a read-only transaction but that would leave something
# behind if the transaction were kept: runspan rolls every call back, so they leave nothing.
LEAVE_NOTHING = [
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT pg_advisory_lock(42)",
]


@dataclass
class Database:
    admin: str  # a superuser, on this database
    owner: str  # the application's role: owns the tables
    reader: str  # made by `runspan db create-reader`


def _runspan(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSPAN_", "OTEL_"))}
    return subprocess.run(
        [str(_RUNSPAN), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean, "COLUMNS": "200", **env},
    )


@pytest.fixture
def database(postgres: postgres_server.PostgresServer) -> Iterator[Database]:
    owner = postgres_server.create_database(postgres.url)
    name = make_url(owner).database
    admin = make_url(postgres.url).set(database=name).render_as_string(hide_password=False)
    demo = _runspan("demo", "--database-url", owner, "--json")
    assert demo.returncode == 0, demo.stderr
    made = _runspan("db", "create-reader", f"reader_{name}", "--execute", "--database-url", admin)
    assert made.returncode == 0, made.stderr
    reader = made.stdout.split("RUNSPAN_READ_DATABASE_URL='")[1].split("'")[0]
    yield Database(admin, owner, reader)
    postgres_server.drop_database(postgres.url, owner)


def _state(db: Database, folder: Path) -> tuple[object, ...]:
    """What a write would change: rows, schema, settings, roles, and the files in the folder."""
    engine = create_engine(db.admin)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*), min(name), max(id) FROM runs")).one()
        prices = connection.execute(text("SELECT count(*) FROM model_prices")).scalar_one()
        schema = connection.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' ORDER BY 1, 2"
            )
        ).all()
        objects = connection.execute(
            text("SELECT relname, relkind FROM pg_class ORDER BY 1, 2")
        ).all()
        grants = connection.execute(
            text("SELECT relname, relacl::text FROM pg_class WHERE relacl IS NOT NULL ORDER BY 1")
        ).all()
        settings = connection.execute(
            text(
                "SELECT setdatabase, setrole, setconfig::text FROM pg_db_role_setting ORDER BY 1, 2"
            )
        ).all()
        roles = connection.execute(
            text("SELECT rolname, rolsuper, rolcanlogin FROM pg_roles ORDER BY 1")
        ).all()
        large_objects = connection.execute(
            text("SELECT count(*) FROM pg_largeobject_metadata")
        ).scalar_one()
    engine.dispose()
    fresh = create_engine(db.reader)
    with fresh.connect() as connection:
        read_only = connection.execute(text("SHOW default_transaction_read_only")).scalar_one()
    fresh.dispose()
    digest = hashlib.sha256(repr((schema, objects, grants)).encode()).hexdigest()
    files = sorted(path.name for path in folder.iterdir())
    return (tuple(rows), prices, digest, settings, roles, large_objects, read_only, files)


def test_no_text_gets_past_runspan_sql(
    database: Database, tmp_path: Path, postgres: postgres_server.PostgresServer
) -> None:
    """Each hostile statement, run by `runspan sql` as the reader, fails in one line with exit
    status 1, and afterwards nothing has changed and the application's session is alive."""
    folder = tmp_path / "written"
    folder.mkdir()
    os.chmod(folder, 0o777)  # the server's own user could write here, if it were let
    app = create_engine(database.owner)
    with app.connect() as session:  # the application's own session, which must survive
        before = _state(database, folder)
        for statement in HOSTILE:
            sql = statement.format(dir=folder)
            done = _runspan("sql", "--", sql, RUNSPAN_READ_DATABASE_URL=database.reader)
            assert done.returncode == 1, (sql, done.stdout, done.stderr)
            assert done.stderr.startswith("Error: "), (sql, done.stderr)
            assert "Traceback" not in done.stderr
            assert _state(database, folder) == before, sql
        for statement in LEAVE_NOTHING:
            done = _runspan("sql", "--", statement, RUNSPAN_READ_DATABASE_URL=database.reader)
            assert done.returncode == 0, (statement, done.stderr)
            assert _state(database, folder) == before, statement
        assert session.execute(text("SELECT 1")).scalar_one() == 1
        # And the lock taken above went with its session: the application can take it.
        assert session.execute(text("SELECT pg_try_advisory_lock(42)")).scalar_one() is True
    app.dispose()


def test_the_reader_reads(database: Database) -> None:
    """As the reader, a query answers, and its session setting cannot outlive the call."""
    done = _runspan(
        "sql",
        "SELECT count(*) AS n FROM runs",
        "--json",
        RUNSPAN_READ_DATABASE_URL=database.reader,
    )
    assert done.returncode == 0, done.stderr
    assert '"n": 22' in done.stdout
    changed = _runspan(
        "sql",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        RUNSPAN_READ_DATABASE_URL=database.reader,
    )
    assert changed.returncode == 0, changed.stderr
    again = _runspan(
        "sql", "SHOW default_transaction_read_only", RUNSPAN_READ_DATABASE_URL=database.reader
    )
    assert again.returncode == 0, again.stderr
    assert "on" in again.stdout.split()


def test_a_kept_connection_carries_nothing_from_one_read_to_the_next(
    database: Database, tmp_path: Path
) -> None:
    """In one process (`runspan serve`, a notebook) the reader's connection is kept between
    reads: what a statement left in its session (a setting, an advisory lock, a large object)
    is gone before the next read, on the same connection."""
    from runspan.storage import RunStore

    with RunStore(database.reader) as store:
        backend = store.sql("SELECT pg_backend_pid() AS pid").rows
        before = _state(database, tmp_path)
        for statement in LEAVE_NOTHING:
            store.sql(statement)
            assert store.sql("SELECT pg_backend_pid() AS pid").rows == backend  # kept
            shown = store.sql("SHOW default_transaction_read_only").rows
            assert [tuple(row) for row in shown] == [("on",)], statement
            assert _state(database, tmp_path) == before, statement
            app = create_engine(database.owner)
            with app.connect() as session:
                taken = session.execute(text("SELECT pg_try_advisory_lock(42)")).scalar_one()
                assert taken is True, statement
            app.dispose()
        assert len(store.runs(limit=100)) == 22


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_any_other_role_is_refused_with_the_remedy(database: Database, who: str) -> None:
    """The application's role (it owns the tables) and a superuser are refused before the
    statement runs, with the command that makes a reader."""
    url = database.owner if who == "owner" else database.admin
    done = _runspan("sql", "SELECT count(*) FROM runs", "--database-url", url)
    assert done.returncode == 1
    assert "runspan db create-reader" in done.stderr
    assert "RUNSPAN_READ_DATABASE_URL" in done.stderr
    listed = _runspan("runs", "--limit", "1", "--json", "--database-url", url)
    assert listed.returncode == 0, listed.stderr  # runspan's own queries need no reader


def test_create_reader_prints_the_grants(database: Database, tmp_path: Path) -> None:
    """Without --execute it prints the statements and the URL to set; a bad role name, or a
    SQLite database, is one clear line."""
    printed = _runspan("db", "create-reader", "analyst", "--database-url", database.owner)
    assert printed.returncode == 0, printed.stderr
    assert 'CREATE ROLE "analyst" LOGIN' in printed.stdout
    assert "GRANT SELECT ON runs, traces, model_prices" in printed.stdout
    assert "default_transaction_read_only = on" in printed.stdout
    assert "RUNSPAN_READ_DATABASE_URL='postgresql+psycopg://analyst@" in printed.stdout
    bad = _runspan(
        "db", "create-reader", 'x"; DROP TABLE runs; --', "--database-url", database.owner
    )
    assert bad.returncode == 1
    assert "lower-case name" in bad.stderr
    sqlite = _runspan(
        "db", "create-reader", "analyst", "--database-url", f"sqlite:///{tmp_path}/x.db"
    )
    assert sqlite.returncode == 1
    assert "read-only already" in sqlite.stderr

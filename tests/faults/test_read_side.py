"""The read side: `runspan sql` cannot write, filters are data, and a corrupt or foreign file
is a clear error."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from runspan.cli import main
from runspan.storage import QueryError, RunStore, SchemaError
from runspan.storage.partitions import partition_name
from runspan.storage.schema import DAY_NS

# Every kind of statement that could change something, on both databases.
WRITES_ANYWHERE = [
    "INSERT INTO model_prices (model_pattern, input_usd_per_mtok, output_usd_per_mtok,"
    " valid_from_ns) VALUES ('evil%', 1, 1, 0)",
    "UPDATE runs SET name = 'x'",
    "DELETE FROM runs",
    "WITH doomed AS (SELECT id FROM runs) DELETE FROM runs WHERE id IN (SELECT id FROM doomed)",
    "DROP TABLE runs",
    "DROP VIEW runs_v",
    "CREATE TABLE evil (x INTEGER)",
    "CREATE TEMP TABLE evil (x INTEGER)",
    "CREATE INDEX evil ON runs (name)",
    "CREATE VIEW evil AS SELECT 1",
    "ALTER TABLE runs ADD COLUMN evil INTEGER",
    "ALTER TABLE runs RENAME TO evil",
    "SELECT 1; DELETE FROM runs",
    # The stored costs: marked priced at a price that changed, or changed themselves.
    "UPDATE price_state SET priced_epoch = epoch + 1, epoch = epoch + 1",
    "UPDATE traces SET cost_usd = 0",
    "DELETE FROM sessions",
    "INSERT INTO users_daily (user_id, start_day, turns, runs, errors) VALUES ('x', 0, 1, 1, 0)",
    # The tags a tag filter rules periods out by.
    "INSERT INTO runs_daily_tags (start_day, tag) VALUES (0, 'evil')",
    "UPDATE rolled_hours SET tags = 0",
]
WRITES_SQLITE = [
    "REPLACE INTO model_prices (model_pattern, input_usd_per_mtok, output_usd_per_mtok,"
    " valid_from_ns) VALUES ('gpt-4o%', 0, 0, 0)",
    "CREATE TRIGGER evil AFTER INSERT ON runs BEGIN DELETE FROM runs; END",
    "ATTACH DATABASE '{dir}/attached.db' AS evil",
    "VACUUM",
    "VACUUM INTO '{dir}/copy.db'",
    "REINDEX",
    "ANALYZE",
    "PRAGMA user_version = 7",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA query_only = 0",
    "PRAGMA writable_schema = 1",
    "UPDATE sqlite_master SET sql = 'x' WHERE name = 'runs'",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "SELECT load_extension('evil')",
]
WRITES_POSTGRES = [
    "TRUNCATE runs",
    "GRANT ALL ON runs TO PUBLIC",
    "COMMENT ON TABLE runs IS 'evil'",
    "SELECT nextval(pg_get_serial_sequence('runs', 'id'))",
    "WITH doomed AS (DELETE FROM runs RETURNING 1) SELECT count(*) FROM doomed",
    "SET TRANSACTION READ WRITE",
    "LOCK TABLE runs IN ACCESS EXCLUSIVE MODE",
    "DO $$ BEGIN DELETE FROM runs; END $$",
    "VACUUM runs",
    "NOTIFY evil",
    # runs is partitioned by day: a day's partition is a table of its own.
    "DELETE FROM {partition}",
    "TRUNCATE {partition}",
    "DROP TABLE {partition}",
    "ALTER TABLE runs DETACH PARTITION {partition}",
    "CREATE TABLE evil PARTITION OF runs FOR VALUES FROM (0) TO (1)",
]


def _state(url: str, folder: Path | None) -> tuple[object, ...]:
    """What a write would change: rows, schema, settings, and the files in the folder."""
    engine = create_engine(url)
    with engine.connect() as connection:
        runs = connection.execute(text("SELECT count(*), min(name) FROM runs")).one()
        prices = connection.execute(text("SELECT count(*) FROM model_prices")).scalar_one()
        costs = connection.execute(
            text(
                "SELECT (SELECT epoch || '/' || priced_epoch FROM price_state),"
                " (SELECT sum(cost_usd) FROM traces), (SELECT count(*) FROM sessions),"
                " (SELECT count(*) FROM users_daily), (SELECT count(*) FROM runs_daily_tags),"
                " (SELECT count(tags) FROM rolled_hours)"
            )
        ).one()
        if connection.dialect.name == "sqlite":
            schema = connection.execute(text("SELECT name, sql FROM sqlite_master")).all()
            settings = connection.execute(text("PRAGMA user_version")).all()
            settings += connection.execute(text("PRAGMA journal_mode")).all()
        else:
            schema = connection.execute(
                text("SELECT table_name, column_name FROM information_schema.columns")
            ).all()
            settings = connection.execute(text("SELECT count(*) FROM pg_indexes")).all()
    engine.dispose()
    files = sorted(path.name for path in folder.iterdir()) if folder is not None else []
    schema_text = repr(sorted(map(repr, schema)))
    return (
        tuple(runs),
        prices,
        tuple(costs),
        hashlib.sha256(schema_text.encode()).hexdigest(),
        (
            tuple(settings),
            files,
        ),
    )


@pytest.fixture
def demo_database(database_url: str) -> str:
    result = CliRunner().invoke(main, ["demo", "--database-url", database_url, "--json"])
    assert result.exit_code == 0, result.output
    return database_url


def test_runspan_sql_refuses_every_kind_of_write(demo_database: str, tmp_path: Path) -> None:
    """Each statement fails with one line and exit status 1, and afterwards the rows, the
    schema, the settings and the files beside the database are as they were."""
    is_sqlite = demo_database.startswith("sqlite")
    folder = Path(demo_database.removeprefix("sqlite:///")).parent if is_sqlite else None
    statements = WRITES_ANYWHERE + (WRITES_SQLITE if is_sqlite else WRITES_POSTGRES)
    before = _state(demo_database, folder)
    today_partition = partition_name(time.time_ns() // DAY_NS)  # where the demo's runs are
    for statement in statements:
        sql = statement.format(dir=folder or tmp_path, partition=today_partition)
        result = CliRunner().invoke(main, ["sql", sql, "--database-url", demo_database])
        assert result.exit_code == 1, (sql, result.output)
        assert result.output.startswith("Error: "), (sql, result.output)
        assert "Traceback" not in result.output
    assert _state(demo_database, folder) == before


def test_one_store_refuses_every_write_on_the_connection_it_keeps(
    demo_database: str, tmp_path: Path
) -> None:
    """In one process (`runspan serve`, a notebook) the store keeps its connection between
    statements: after every refused write, the next read is on that connection, and the
    database is as it was."""
    is_sqlite = demo_database.startswith("sqlite")
    folder = Path(demo_database.removeprefix("sqlite:///")).parent if is_sqlite else None
    statements = WRITES_ANYWHERE + (WRITES_SQLITE if is_sqlite else WRITES_POSTGRES)
    before = _state(demo_database, folder)
    today_partition = partition_name(time.time_ns() // DAY_NS)
    with RunStore(demo_database) as store:
        for statement in statements:
            with pytest.raises(QueryError):
                store.sql(statement.format(dir=folder or tmp_path, partition=today_partition))
            assert len(store.runs(limit=100)) == 22, statement
        assert store.engine.pool.checkedin() == 1  # one connection, kept throughout
    assert _state(demo_database, folder) == before


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE runs; --",
        "x' OR '1'='1",
        "%' UNION SELECT sql FROM sqlite_master --",
        "\\'; DELETE FROM runs; --",
    ],
)
def test_cli_filters_are_data_not_sql(demo_database: str, hostile: str) -> None:
    """An injection attempt in any filter matches nothing and changes nothing."""
    runner = CliRunner()
    for option in ("--name", "--type", "--status", "--model", "--tag", "--contains", "--trace"):
        args = ["runs", option, hostile, "--database-url", demo_database, "--json"]
        result = runner.invoke(main, args)
        if result.exit_code == 0:
            assert result.output.strip() == "[]", (option, result.output)
        else:  # a value the filter refuses (a status that does not exist), said in one line
            assert result.output.startswith("Error: "), (option, result.output)
    result = runner.invoke(
        main, ["runs", "--metadata", f"{hostile}={hostile}", "--database-url", demo_database]
    )
    assert result.exit_code == 0
    with RunStore(demo_database) as store:
        assert len(store.runs(limit=100)) == 22


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    """A damaged file, or one that is no database at all, is named with what to do."""
    text_file = tmp_path / "notes.db"
    text_file.write_text("not a database at all " * 20)
    for command in (["runs"], ["db", "upgrade"]):
        result = CliRunner().invoke(main, [*command, "--database-url", f"sqlite:///{text_file}"])
        assert result.exit_code == 1
        assert str(text_file) in result.output
        assert "move the file aside" in result.output
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    for command in (["runs"], ["sql", "SELECT 1"], ["show", "ab" * 16], ["stats"]):
        result = CliRunner().invoke(main, [*command, "--database-url", f"sqlite:///{corrupt}"])
        assert result.exit_code == 1
        assert result.output.startswith("Error: ")
        assert "not a SQLite database" in result.output or "malformed" in result.output
    with pytest.raises((SchemaError, QueryError)):
        RunStore(f"sqlite:///{corrupt}")


def test_a_foreign_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    """Another application's database: readers say it is not runspan's, and the writer
    refuses to touch it."""
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, what TEXT)")
        connection.execute("INSERT INTO runs (what) VALUES ('theirs')")
    connection.close()
    url = f"sqlite:///{foreign}"
    result = CliRunner().invoke(main, ["runs", "--database-url", url])
    assert result.exit_code == 1
    assert str(foreign) in result.output  # the file is named
    assert "another application's database" in result.output
    assert "db upgrade" not in result.output  # which would refuse it: never advised
    result = CliRunner().invoke(main, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert "not runspan's" in result.output
    with sqlite3.connect(foreign) as connection:
        assert connection.execute("SELECT what FROM runs").fetchall() == [("theirs",)]
    connection.close()

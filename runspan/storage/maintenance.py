"""Changing a runspan database on purpose: schema upgrades, retention, and a role that reads."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from runspan.storage.engine import (
    create_writer_engine,
    database_url_from,
    described,
    is_sqlite,
    safe_url,
    sqlite_path,
)
from runspan.storage.errors import ConfigurationError, DatabaseUnavailable
from runspan.storage.migrate import check_schema, upgrade
from runspan.storage.readonly import reader_statements
from runspan.storage.retention import remove_before
from runspan.storage.schema import runs, traces


@dataclass(frozen=True)
class Pruned:
    """What a prune removed (or, in a dry run, would remove)."""

    traces: int
    runs: int
    dry_run: bool = False
    freed_bytes: int | None = None  # SQLite: what the file shrank by once vacuumed


def upgrade_database(database_url: str | URL | None = None) -> str:
    """Create or migrate the schema; returns the schema version now in the database."""
    engine = create_writer_engine(database_url_from(database_url))
    try:
        return upgrade(engine)
    finally:
        engine.dispose()


def prune(
    older_than_seconds: float,
    database_url: str | URL | None = None,
    *,
    now_ns: int | None = None,
    dry_run: bool = False,
) -> Pruned:
    """Delete every trace that started more than ``older_than_seconds`` ago, with its runs,
    including runs left ``running`` by a process that died, in chunks; on SQLite, then give the
    space back to the disk (``VACUUM``). ``dry_run``: count what would go, and change
    nothing."""
    if not older_than_seconds > 0:
        raise ValueError(f"older_than_seconds={older_than_seconds!r}: use a positive number")
    cutoff = (time.time_ns() if now_ns is None else now_ns) - int(older_than_seconds * 1e9)
    engine = create_writer_engine(database_url_from(database_url))
    try:
        check_schema(engine)
        if dry_run:
            return _would_prune(engine, cutoff)
        removed = remove_before(engine, cutoff)
        freed = _vacuum(engine) if removed.traces and is_sqlite(engine.url) else None
    except DBAPIError as error:
        raise DatabaseUnavailable(
            f"cannot prune {safe_url(engine.url)}: {described(error, engine.url)}"
        ) from None
    finally:
        engine.dispose()
    return Pruned(traces=removed.traces, runs=removed.runs, freed_bytes=freed)


def _would_prune(engine: Engine, cutoff: int) -> Pruned:
    old = select(traces.c.trace_id).where(traces.c.start_ns < cutoff)
    with engine.connect() as connection:
        old_traces = connection.execute(select(func.count()).select_from(old.subquery()))
        counted_traces = int(old_traces.scalar_one())
        old_runs = connection.execute(
            select(func.count()).select_from(runs).where(runs.c.trace_id.in_(old))
        )
        return Pruned(traces=counted_traces, runs=int(old_runs.scalar_one()), dry_run=True)


def _vacuum(engine: Engine) -> int | None:
    """Give a SQLite file's free pages back to the disk; how many bytes the file and its
    write-ahead log shrank by together."""
    path = sqlite_path(engine.url)
    if path is None or not path.exists():
        return None
    before = _on_disk(path)
    try:
        with engine.connect() as opened:
            connection = opened.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("VACUUM")
            # VACUUM writes the whole database to the log: fold it back and empty the log.
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    except DBAPIError:  # an app writing right now holds the file: the prune itself is done
        return None
    return max(before - _on_disk(path), 0)


def _on_disk(path: Path) -> int:
    log = path.with_name(path.name + "-wal")
    return path.stat().st_size + (log.stat().st_size if log.exists() else 0)


def create_reader(
    role: str,
    database_url: str | URL | None = None,
    *,
    password: str | None = None,
    execute: bool = False,
) -> tuple[list[str], URL]:
    """The statements that make ``role`` a PostgreSQL role that can only read runspan's tables,
    run with ``database_url``'s role if ``execute``; and the URL to read with (as ``role``).

    Raises:
        ConfigurationError: a SQLite database (its readers open the file read-only already).
        QueryError: a role name that is not a plain identifier.
        DatabaseUnavailable: the statements could not be run (the role exists, say).
    """
    url = database_url_from(database_url)
    if is_sqlite(url):
        raise ConfigurationError(
            "create-reader is for PostgreSQL: runspan opens a SQLite file read-only already"
        )
    statements = reader_statements(role, url.database or "", password)
    reader_url = url.set(username=role, password=password)
    if not execute:
        return statements, reader_url
    engine = create_writer_engine(url)
    try:
        check_schema(engine)
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    except DBAPIError as error:
        raise DatabaseUnavailable(
            f"cannot make the role {role} in {safe_url(url)}: {described(error, url)}"
        ) from None
    finally:
        engine.dispose()
    return statements, reader_url

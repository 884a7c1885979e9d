"""Database URLs and engines: SQLite tuned for several writers, PostgreSQL through psycopg 3.

A URL comes from the argument, else ``RUNSPAN_DATABASE_URL``, else ``sqlite:///runspan.db``.
Whatever goes wrong, the password of a URL never appears in a message: URLs are shown through
:func:`safe_url` only, and driver errors through :func:`scrubbed`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import Pool, StaticPool

from runspan.storage.errors import ConfigurationError, DatabaseNotFoundError

DATABASE_URL_ENV = "RUNSPAN_DATABASE_URL"
# The read side's own URL (a role that can only read), else the one above.
READ_DATABASE_URL_ENV = "RUNSPAN_READ_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///runspan.db"

# Seconds a SQLite writer waits for another process's write lock before giving up. Writers
# hold it for one batch (milliseconds), so this only runs out when something is stuck.
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def read_database_url_from(
    argument: str | URL | None, environ: Mapping[str, str] | None = None
) -> URL:
    """The URL readers use: the argument, ``RUNSPAN_READ_DATABASE_URL``, then as
    :func:`database_url_from`."""
    env = os.environ if environ is None else environ
    if argument is None and env.get(READ_DATABASE_URL_ENV, "").strip():
        return database_url_from(None, env, variable=READ_DATABASE_URL_ENV)
    return database_url_from(argument, env)


def database_url_from(
    argument: str | URL | None,
    environ: Mapping[str, str] | None = None,
    *,
    variable: str = DATABASE_URL_ENV,
) -> URL:
    """The database URL: the argument, ``variable`` (``RUNSPAN_DATABASE_URL``), or
    ``sqlite:///runspan.db``.

    Raises:
        ConfigurationError: the URL cannot be parsed or names a database runspan does not
            support, or its driver is not installed.
    """
    env = os.environ if environ is None else environ
    raw: str | URL = argument if argument is not None else env.get(variable, "").strip()
    source = "database_url" if argument is not None else variable
    if not raw:
        raw = DEFAULT_DATABASE_URL
    try:
        url = make_url(raw)
    except ArgumentError:
        # Not echoed: a URL that does not parse may still hold a password somewhere.
        raise ConfigurationError(
            f"{source} is not a database URL: use sqlite:///path/to/runspan.db"
            " or postgresql+psycopg://user@host/dbname"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise ConfigurationError(
                f"{source}={safe_url(url)!r}: runspan talks to PostgreSQL through psycopg 3;"
                " use a postgresql+psycopg:// URL"
            )
        url = url.set(drivername="postgresql+psycopg")
        try:
            import psycopg  # noqa: F401, PLC0415 - only needed for PostgreSQL URLs
        except ImportError:
            raise ConfigurationError(
                "PostgreSQL needs psycopg 3: pip install 'runspan[postgres]'"
            ) from None
    elif backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigurationError(
                f"{source}={safe_url(url)!r}: use a plain sqlite:/// URL (the built-in driver)"
            )
    else:
        raise ConfigurationError(
            f"{source}={safe_url(url)!r}: runspan stores runs in SQLite or PostgreSQL;"
            " use sqlite:///path/to/runspan.db or postgresql+psycopg://user@host/dbname"
        )
    return url


def safe_url(url: URL) -> str:
    """The URL as text with its password masked: the only way runspan shows a URL."""
    return url.render_as_string(hide_password=True)


def scrubbed(message: str, url: URL) -> str:
    """``message`` with the URL's password masked, for errors that drivers word themselves."""
    password = url.password
    if password:
        message = message.replace(str(password), "***")
    return message


def described(error: BaseException, url: URL) -> str:
    """A database error in one line, as its driver words it, with the URL's password masked;
    its type where the driver says nothing."""
    cause = getattr(error, "orig", None) or error
    lines = scrubbed(str(cause), url).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL; ``None`` for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


def _set_sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer and the writer never blocks readers, so `runspan`
    # queries run while the app writes, and several processes can share one file.
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only a power loss can undo the
    # last commits, and it saves an fsync per batch.
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoint the WAL into the database every ~40 MB instead of every ~4 MB: each checkpoint
    # syncs the file and rewrites hot index pages, and the writer's batches are large; readers
    # barely notice a WAL of this size.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    # Another process writing its batch holds the lock briefly: wait for it rather than fail.
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
    # Enforce foreign keys if a user adds some; runspan itself defines none between runs.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# What a reader's statements may do. mode=ro and query_only keep the database file unchanged,
# but not everything else: ATTACH creates the file it names, VACUUM INTO writes a copy, some
# PRAGMAs change the connection. The authorizer allows reading and nothing more.
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_SQLITE_READ_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
        _SQLITE_RECURSIVE,
    }
)
# PRAGMAs whose argument names what to list (a table, an index): always reads.
_SQLITE_LISTING_PRAGMAS = frozenset(
    {
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "table_info",
        "table_list",
        "table_xinfo",
    }
)
# PRAGMAs that read when given no value, and set something when given one.
_SQLITE_SETTING_PRAGMAS = frozenset(
    {
        "application_id",
        "collation_list",
        "compile_options",
        "data_version",
        "database_list",
        "encoding",
        "freelist_count",
        "function_list",
        "journal_mode",
        "page_count",
        "page_size",
        "pragma_list",
        "schema_version",
        "user_version",
    }
)


def _only_reads(action: int, first: str | None, second: str | None, *_: object) -> int:
    if action in _SQLITE_READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_UPDATE and first == "sqlite_master":
        # How SQLite asks when a table-valued function (json_each) declares its columns; a
        # real change to the schema table is still refused by mode=ro and query_only.
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (first or "").lower()
        if name in _SQLITE_LISTING_PRAGMAS or (second is None and name in _SQLITE_SETTING_PRAGMAS):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _set_sqlite_read_only(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
    # Belt and braces over mode=ro: no statement on this connection may change the file.
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()
    dbapi_connection.set_authorizer(_only_reads)


def create_writer_engine(url: URL) -> Engine:
    """An engine for the span writer, with the settings each database needs for it."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None and not path.parent.exists():
            raise ConfigurationError(
                f"the folder of the SQLite database {str(path)!r} does not exist: create it or"
                " point RUNSPAN_DATABASE_URL elsewhere"
            )
        # The writer thread and the app's flush both write: access is serialized by the
        # writer's lock, so a connection may move between threads.
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        pool = _sqlite_pool(url)
        if pool is not None:
            options["poolclass"] = pool
        engine = create_engine(url, **options)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        _bind_none_directly()
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=2,
        # No JIT: the writer's statements take milliseconds, and while a new table has no
        # statistics the planner overestimated them and compiled one for a second.
        connect_args={
            "connect_timeout": 10,
            "application_name": "runspan",
            "options": "-c jit=off",
        },
    )


def _bind_none_directly() -> None:
    """Make ``None`` parameters cheap for sqlite3, as they are for ``int`` and ``str``.

    sqlite3 binds ints, floats and strings directly, but looks every other value up in its
    adapter registry, then for ``__adapt__`` and ``__conform__`` methods, before it binds
    ``None`` as NULL: about a quarter of a microsecond per value. A row has a dozen NULLs (no
    model, no error, no tokens), which made them a third of the writer's time in SQLite. An
    adapter that returns ``None`` is found in the registry's first lookup, and ``None`` is still
    bound as NULL, so nothing changes but the cost. The registry is process-wide: an adapter
    for ``None`` that the application registered is left alone.
    """
    if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
        nothing: dict[None, None] = {}
        sqlite3.register_adapter(type(None), nothing.get)  # in C: None, whatever it is given


def _sqlite_pool(url: URL) -> type[Pool] | None:
    # An in-memory database lives as long as its one connection: share that connection.
    return StaticPool if sqlite_path(url) is None else None


def create_reader_engine(url: URL) -> Engine:
    """An engine that cannot change the database: SQLite opened read-only, PostgreSQL sessions
    that default to read-only transactions.

    Raises:
        DatabaseNotFoundError: a SQLite file that does not exist (it is never created here).
    """
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is None:
            raise ConfigurationError("an in-memory SQLite database has no runs to read")
        if not path.is_file():
            raise DatabaseNotFoundError(
                f"no runspan database at {str(path)!r}: run an app with runspan.configure()"
                " (or `runspan demo`) first, or pass --database-url / set RUNSPAN_DATABASE_URL"
            )
        uri = f"file:{path.resolve().as_posix()}?mode=ro"
        engine = create_engine(
            url,  # what messages name; connections come from the creator, read-only
            creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
            # Kept, as on PostgreSQL: a new connection reads the whole schema again, 3 ms on
            # runspan's, and a read of the newest runs is several statements.
            pool_size=2,
            max_overflow=8,
        )
        event.listen(engine, "connect", _set_sqlite_read_only)
        return engine
    engine = create_engine(
        url,
        # Connections kept: a read of the newest runs or of Jaeger's search is several
        # statements, and a new connection each cost 5-10 ms on loopback. A connection goes back
        # rolled back, which also undoes any setting a statement changed for its session.
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=8,  # runspan serve reads in several threads at once
        connect_args={
            "connect_timeout": 10,
            "application_name": "runspan-cli",
            # No JIT either: runspan's reads take milliseconds, and compiling one that the
            # planner overestimates takes a second.
            "options": "-c default_transaction_read_only=on -c jit=off",
            # Every statement prepared: the extended query protocol, which refuses a text of
            # several statements (see runspan.storage.readonly).
            "prepare_threshold": 0,
        },
    )
    event.listen(engine, "checkin", _release_session_locks)
    return engine


def _release_session_locks(dbapi_connection: Any, record: Any) -> None:
    """A kept connection gives back the advisory locks a statement took for its session (a
    rollback keeps them), so that a read never holds a writer's lock after it ended."""
    if dbapi_connection is None:
        return
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")
        dbapi_connection.rollback()
    except Exception:  # a broken connection: not kept
        record.invalidate()

"""Schema migrations with Alembic, run by runspan itself.

A new database is created and migrated on first use by the writer; an older one is upgraded the
same way. Readers (the CLI, the query API) never change the schema: they say what to run.
Migrations take a lock first (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so
several processes starting at once migrate one at a time, and a migration that fails leaves the
database as it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from runspan.storage.engine import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    described,
    is_sqlite,
    safe_url,
    sqlite_path,
)
from runspan.storage.errors import DatabaseUnavailable, SchemaError

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "runspan_schema_version"
_MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant will do: it names runspan's lock among the database's advisory locks.
_PG_LOCK_KEY = 0x72756E7370616E  # "runspan"


def _config() -> Config:
    from alembic.config import Config  # noqa: PLC0415 - only writers migrate; readers start fast

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def revisions() -> list[str]:
    """The schema versions this runspan knows, oldest first: the revisions' ids, which are the
    four digits their files start with (a test holds this to Alembic's own reading). Read
    without Alembic, so that readers, which only check the version, start fast."""
    names = (path.name for path in (_MIGRATIONS / "versions").glob("*.py"))
    return sorted(found.group(1) for name in names if (found := re.match(r"(\d{4})_", name)))


def head_revision() -> str:
    """The schema version this runspan writes."""
    return revisions()[-1]


def current_revision(connection: Connection) -> str | None:
    """The database's schema version; ``None`` if runspan has not migrated it yet."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    found = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    return None if found is None else str(found)


def _known(revision: str) -> bool:
    return revision in revisions()


def check_schema(engine: Engine) -> None:
    """Raise unless the database is a runspan database at the version this code reads.

    Raises:
        SchemaError: not a runspan database, or at another version; the message says what to do.
        DatabaseUnavailable: the database cannot be reached.
    """
    try:
        with engine.connect() as connection:
            revision = current_revision(connection)
            names = set(inspect(connection).get_table_names()) if revision is None else set()
    except DBAPIError as error:
        raise _failure(engine, error) from None
    head = head_revision()
    if revision == head:
        return
    where = safe_url(engine.url)
    if revision is None and "runs" in names:  # db upgrade would refuse it: never advise it
        raise SchemaError(
            f"{where} is another application's database (its 'runs' table is not runspan's):"
            " point --database-url / RUNSPAN_DATABASE_URL at runspan's database"
        )
    if revision is None:
        what = "has tables but no runspan schema" if names else "has no runspan schema"
        raise SchemaError(
            f"{where} {what}: point --database-url / RUNSPAN_DATABASE_URL at runspan's"
            " database, or create runspan's tables there with `runspan db upgrade`"
        )
    if not _known(revision):
        raise SchemaError(
            f"{where} was written by a newer runspan (schema {revision}, this one knows up to"
            f" {head}): upgrade runspan with pip install -U runspan"
        )
    raise SchemaError(
        f"{where} is at schema {revision}, this runspan reads {head}:"
        " run `runspan db upgrade` (or start an app with runspan.configure())"
    )


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Create or migrate runspan's schema to the latest version (or to ``revision``, for
    tests of migrations); returns that version.

    Raises:
        SchemaError: the database holds other tables named like runspan's, or was written by
            a newer runspan.
        DatabaseUnavailable: the database cannot be reached.
    """
    head = head_revision() if revision == "head" else revision
    migrator = _migration_engine(engine)
    try:
        with migrator.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
                )
            current = current_revision(connection)
            if current == head:
                return head
            if current is not None and not _known(current):
                raise SchemaError(
                    f"{safe_url(engine.url)} was written by a newer runspan (schema {current}):"
                    " upgrade runspan with pip install -U runspan"
                )
            if current is None and "runs" in inspect(connection).get_table_names():
                raise SchemaError(
                    f"{safe_url(engine.url)} already has a 'runs' table that is not runspan's:"
                    " give runspan a database (or SQLite file) of its own"
                )
            if connection.dialect.name == "postgresql" and current is not None:
                _as_owner(connection, engine)
            config = _config()
            config.attributes["connection"] = connection
            from alembic import command  # noqa: PLC0415 - only writers migrate

            command.upgrade(config, head)
    except DBAPIError as error:
        raise _failure(engine, error) from None
    finally:
        if migrator is not engine:
            migrator.dispose()
    return head


def _as_owner(connection: Connection, engine: Engine) -> None:
    """Run the revisions as the owner of runspan's tables (``runs``), also when an
    administrator upgrades: what they make then belongs to the role the writers use, which
    could not otherwise write the new tables (the rollups of a revision made by the superuser
    were refused to the writer)."""
    found = connection.execute(
        text(
            "SELECT tableowner, current_user FROM pg_tables"
            " WHERE tablename = 'runs' AND schemaname = current_schema()"
        )
    ).first()
    if found is None or found[0] == found[1]:  # no runs yet (the revisions make it), or ours
        return
    owner, user = found
    quoted = connection.dialect.identifier_preparer.quote(owner)
    try:
        with connection.begin_nested():
            connection.execute(text(f"SET LOCAL ROLE {quoted}"))
    except DBAPIError:
        raise SchemaError(
            f"{safe_url(engine.url)}: runspan's tables belong to {owner!r}, and {user!r} cannot"
            f" act as it: run `runspan db upgrade` as {owner!r} (or as a role that is a member"
            " of it)"
        ) from None


def _migration_engine(engine: Engine) -> Engine:
    """An engine whose transactions really enclose DDL, with the write lock taken up front.

    Python's sqlite3 runs DDL outside transactions; on this engine runspan issues ``BEGIN
    IMMEDIATE`` itself, which both makes the migration atomic and makes a second process wait
    for the first (up to the busy timeout) instead of creating the same tables at once.
    """
    if not is_sqlite(engine.url) or sqlite_path(engine.url) is None:
        return engine  # PostgreSQL's DDL is transactional; in memory there is one process
    migrator = create_engine(
        engine.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, poolclass=NullPool
    )

    @event.listens_for(migrator, "connect")
    def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(migrator, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return migrator


def _failure(engine: Engine, error: DBAPIError) -> SchemaError | DatabaseUnavailable:
    """A file that is not a SQLite database will not become one: say so, and what to do,
    rather than retry it as a database that is away."""
    if "file is not a database" in str(error.orig):
        return SchemaError(
            f"{safe_url(engine.url)} is not a SQLite database file (damaged, or another kind of"
            " file): point --database-url / RUNSPAN_DATABASE_URL at runspan's database, or move"
            " the file aside to start a new one"
        )
    return _unavailable(engine, error)


def _unavailable(engine: Engine, error: DBAPIError) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"cannot use the database {safe_url(engine.url)}: {described(error, engine.url)}"
    )

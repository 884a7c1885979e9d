"""What ``runspan sql`` lets through on PostgreSQL, and the role that can only read.

A read-only transaction alone is not enough: over the simple query protocol a user's text can
end it (``COMMIT; BEGIN READ WRITE; DELETE ...``), and it does not stop ``COPY ... TO`` a file, a
``DO`` block, or functions that act outside the database. So, on top of it:

- the reader's connections prepare every statement (the extended query protocol), which the
  server refuses for more than one statement;
- the statement must be one that reads (``SELECT``, ``WITH``, ``VALUES``, ``TABLE``, ``EXPLAIN``,
  ``SHOW``), so no ``COPY``, ``DO``, ``SET``, ``COMMIT`` or ``CALL``;
- the role must be one that can only read: not a superuser, not a member of the roles that
  reach the server's files, programs or other sessions (``pg_write_server_files``,
  ``pg_read_server_files``, ``pg_execute_server_program``, ``pg_signal_backend``), and without
  the right to change runspan's tables (an owner, or the application's writer, could signal
  its own sessions, and its privileges are the ones every later mistake would use).

``runspan db create-reader`` makes such a role; ``RUNSPAN_READ_DATABASE_URL`` names it for the
read side. runspan's other commands run only runspan's own statements, with bound values, and
need no such role.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from runspan.storage.errors import QueryError

READING_STATEMENTS = ("select", "with", "values", "table", "explain", "show")
# Roles whose members can act outside the database from inside a SELECT.
_SERVER_ROLES = (
    "pg_write_server_files",
    "pg_read_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
)
#: Where runspan's tables and views live, for the reader's grants.
READ_OBJECTS = (
    "runs",
    "traces",
    "model_prices",
    "runs_v",
    "traces_v",
    "llm_calls",
    "sessions_v",
    "feedback",
    "feedback_v",
    "span_names",
    "slowest_runs",
    "runs_daily",
    "runs_hourly",
    "rolled_days",
    "rolled_hours",
    "runs_daily_traces",
    "runs_hourly_traces",
    "runs_daily_tags",
    "runs_hourly_tags",
    "runs_slices",
    "rolled_slices",
    "runs_slices_traces",
    "runs_slices_tags",
    "runs_daily_v",
    "sessions",
    "users_daily",
    "users_daily_v",
    "price_state",
    "runspan_schema_version",
)
_WRITABLE = ("runs", "traces", "model_prices", "feedback")
_CAPABILITIES = text(
    "SELECT rolsuper, "
    + ", ".join(f"pg_has_role(current_user, '{role}', 'MEMBER')" for role in _SERVER_ROLES)
    + ", "
    + ", ".join(
        f"has_table_privilege(current_user, '{table}', 'INSERT, UPDATE, DELETE, TRUNCATE')"
        for table in _WRITABLE
    )
    + " FROM pg_roles WHERE rolname = current_user"
)
# Leading white space, comments (nested block comments are PostgreSQL's) and parentheses.
_LEADING = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|\(|/\*)")
_ROLE_NAME = re.compile(r"\A[a-z_][a-z0-9_]{0,62}\Z")


def _skip_block_comment(statement: str, start: int) -> int:
    """The index after the block comment opening at ``start`` (nested, as PostgreSQL nests)."""
    depth, index = 0, start
    while index < len(statement):
        pair = statement[index : index + 2]
        if pair == "/*":
            depth, index = depth + 1, index + 2
        elif pair == "*/":
            depth, index = depth - 1, index + 2
            if depth == 0:
                return index
        else:
            index += 1
    return index


def first_keyword(statement: str) -> str:
    """The statement's first word, lower-cased, past white space, comments and parentheses."""
    index = 0
    while True:
        match = _LEADING.match(statement, index)
        if match is None:
            break
        index = _skip_block_comment(statement, index) if match.group() == "/*" else match.end()
    word = re.match(r"[A-Za-z]+", statement[index:])
    return word.group().lower() if word else ""


def check_reading_statement(statement: str) -> None:
    """Refuse a statement that is not one of the reading kinds.

    Raises:
        QueryError: naming the kinds that run.
    """
    if first_keyword(statement) not in READING_STATEMENTS:
        raise QueryError(
            "runspan sql is read-only: one statement that reads (SELECT, WITH, VALUES, TABLE,"
            " EXPLAIN or SHOW), no COPY, DO, SET or transaction control"
        )


def check_reader_role(connection: Connection) -> None:
    """Refuse a role that can do more than read.

    Raises:
        QueryError: saying how to make a role that can only read.
    """
    found = connection.execute(_CAPABILITIES).first()
    if found is None or any(found):
        raise QueryError(
            "runspan sql reads PostgreSQL only through a role that can do nothing else (this"
            " one can change runspan's tables, or reach the server's files or sessions). Make"
            " one with `runspan db create-reader runspan_reader` and set"
            " RUNSPAN_READ_DATABASE_URL to its URL"
        )


def reader_statements(role: str, database: str, password: str | None = None) -> list[str]:
    """The SQL that makes ``role`` a login role that can read runspan's tables and nothing else.

    Raises:
        QueryError: a role name that is not a plain lower-case identifier.
    """
    if not _ROLE_NAME.match(role):
        raise QueryError(
            f"role {role!r}: use a lower-case name of letters, digits and _ (up to 63)"
        )
    login = "LOGIN"
    if password:
        login += " PASSWORD '" + password.replace("'", "''") + "'"
    quoted_database = '"' + database.replace('"', '""') + '"'
    return [
        f'CREATE ROLE "{role}" {login} NOSUPERUSER NOCREATEDB NOCREATEROLE',
        f'GRANT CONNECT ON DATABASE {quoted_database} TO "{role}"',
        f'GRANT USAGE ON SCHEMA public TO "{role}"',
        f'GRANT SELECT ON {", ".join(READ_OBJECTS)} TO "{role}"',
        f'ALTER ROLE "{role}" SET default_transaction_read_only = on',
    ]

"""What can go wrong with a runspan database, as one small hierarchy.

::

    StorageError
    ├── ConfigurationError      a bad URL, a missing driver, a folder that does not exist
    ├── DatabaseNotFoundError   a read on a SQLite file that is not there
    ├── SchemaError             not a runspan database, or one at another schema version
    ├── QueryError              a bad filter, id or SQL statement
    │   └── NotFoundError       no run or trace with that id
    └── DatabaseUnavailable     the server cannot be reached
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error runspan's storage raises."""


class ConfigurationError(StorageError, ValueError):
    """The database settings are wrong; the message says which and what to use."""


class DatabaseNotFoundError(StorageError):
    """There is no database where the URL points, and reading never creates one."""


class SchemaError(StorageError):
    """The database is not a runspan database, or its schema is at another version."""


class QueryError(StorageError, ValueError):
    """A query cannot run as given: a bad filter value, id or SQL statement."""


class NotFoundError(QueryError, LookupError):
    """No run or trace has the given id."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached now."""

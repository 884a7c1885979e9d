"""Run history in SQL: the span writer, the schema, and the query API.

Write: ``runspan.configure()`` adds a :class:`StorageSpanProcessor` to its provider; add one to
any SDK provider yourself with ``provider.add_span_processor(StorageSpanProcessor(url))``.
Read: :class:`RunStore`, the ``runspan`` command, or plain SQL over ``runs``, ``traces``,
``runs_v``, ``traces_v``, ``llm_calls`` and ``model_prices``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runspan._lazy import lazy_names

# For runspan's command line, not in __all__: how it reads --database-url and shows it.
from runspan.storage.engine import database_url_from as database_url_from
from runspan.storage.engine import is_sqlite as is_sqlite
from runspan.storage.engine import safe_url as safe_url
from runspan.storage.engine import sqlite_path as sqlite_path
from runspan.storage.errors import (
    ConfigurationError,
    DatabaseNotFoundError,
    DatabaseUnavailable,
    NotFoundError,
    QueryError,
    SchemaError,
    StorageError,
)
from runspan.storage.maintenance import Pruned, create_reader, prune, upgrade_database
from runspan.storage.queries import RunStore
from runspan.storage.records import Run, RunFilter, Session, SqlResult, Stat, Trace

if TYPE_CHECKING:
    from runspan.storage.exporter import SqlSpanExporter
    from runspan.storage.processor import StorageSpanProcessor

__all__ = [
    "ConfigurationError",
    "DatabaseNotFoundError",
    "DatabaseUnavailable",
    "NotFoundError",
    "Pruned",
    "QueryError",
    "Run",
    "RunFilter",
    "RunStore",
    "SchemaError",
    "Session",
    "SqlResult",
    "SqlSpanExporter",
    "Stat",
    "StorageError",
    "StorageSpanProcessor",
    "Trace",
    "create_reader",
    "prune",
    "upgrade_database",
]

# The writer's names are imported when first used: the OpenTelemetry SDK is not needed to read.
_WHERE = {
    "SqlSpanExporter": "runspan.storage.exporter",
    "StorageSpanProcessor": "runspan.storage.processor",
}


__getattr__ = lazy_names(__name__, _WHERE)

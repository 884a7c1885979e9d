"""SQL that differs between SQLite and PostgreSQL, each piece compiled per dialect in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Boolean


class json_text(FunctionElement[str]):
    """A JSON column as text, for substring search."""

    type = Text()
    inherit_cache = True


@compiles(json_text, "sqlite")
def _json_text_sqlite(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)  # SQLite keeps JSON as text already


@compiles(json_text, "postgresql")
def _json_text_postgresql(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    # The same expression as the trigram index's, so the index serves the search.
    return f"(({compiler.process(element.clauses, **kw)})::text)"


class json_member_text(FunctionElement[str]):
    """``document[key]`` as text (``NULL`` when missing): ``json_member_text(col, key)``."""

    type = Text()
    inherit_cache = True


@compiles(json_member_text, "sqlite")
def _member_sqlite(element: json_member_text, compiler: SQLCompiler, **kw: Any) -> str:
    document, key = list(element.clauses)
    # A quoted path member, so that keys with dots or spaces are one key.
    path = f"'$.\"' || {compiler.process(key, **kw)} || '\"'"
    return f"CAST(json_extract({compiler.process(document, **kw)}, {path}) AS TEXT)"


@compiles(json_member_text, "postgresql")
def _member_postgresql(element: json_member_text, compiler: SQLCompiler, **kw: Any) -> str:
    document, key = list(element.clauses)
    return f"({compiler.process(document, **kw)} ->> {compiler.process(key, **kw)})"


class json_array_contains(FunctionElement[bool]):
    """Whether a JSON array holds a string: ``json_array_contains(col, value)``. Only strings
    count: a number or a nested list is not a tag, on either database."""

    type = Boolean()
    inherit_cache = True


@compiles(json_array_contains, "sqlite")
def _contains_sqlite(element: json_array_contains, compiler: SQLCompiler, **kw: Any) -> str:
    array, value = list(element.clauses)
    return (
        f"EXISTS (SELECT 1 FROM json_each({compiler.process(array, **kw)})"
        f" WHERE json_each.type = 'text' AND json_each.value = {compiler.process(value, **kw)})"
    )


@compiles(json_array_contains, "postgresql")
def _contains_postgresql(element: json_array_contains, compiler: SQLCompiler, **kw: Any) -> str:
    array, value = list(element.clauses)
    element_text = f"CAST({compiler.process(value, **kw)} AS TEXT)"
    return f"({compiler.process(array, **kw)} @> jsonb_build_array({element_text}))"


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with LIKE's wildcards in it taken literally
    (use with ``escape='\\\\'``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class duration_bucket(FunctionElement[int]):
    """The histogram bucket of a duration in ms, as :func:`runspan.storage.histogram.bucket`
    computes it (the same double arithmetic, so both agree to the bucket)."""

    type = BigInteger()
    inherit_cache = True


def _log_buckets(duration: str) -> str:
    """The duration's logarithm in buckets, not yet rounded down; NULL for no duration."""
    # Imported here: histogram is the writer's too, and this module must stay light to import.
    from runspan.storage.histogram import LEAST_MS, LOG_RATIO  # noqa: PLC0415

    # Not greatest(): PostgreSQL's skips a NULL.
    least = f"{LEAST_MS!r}"
    return f"ln(CASE WHEN {duration} < {least} THEN {least} ELSE {duration} END) / {LOG_RATIO!r}"


@compiles(duration_bucket, "sqlite")
def _bucket_sqlite(element: duration_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    # Not floor(): SQLAlchemy gives SQLite connections a Python floor() that fails on NULL, one
    # call per run. Shifted positive, a cast cuts to the floor (a bucket is never below -700).
    buckets = _log_buckets(compiler.process(element.clauses, **kw))
    return f"(CAST({buckets} + 1000 AS INTEGER) - 1000)"


@compiles(duration_bucket, "postgresql")
def _bucket_postgresql(element: duration_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    buckets = _log_buckets(compiler.process(element.clauses, **kw))
    return f"CAST(floor({buckets}) AS BIGINT)"

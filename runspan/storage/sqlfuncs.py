"""SQL that differs between SQLite and PostgreSQL, each piece compiled per dialect in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text
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
    """Whether a JSON array of strings holds a string: ``json_array_contains(col, value)``."""

    type = Boolean()
    inherit_cache = True


@compiles(json_array_contains, "sqlite")
def _contains_sqlite(element: json_array_contains, compiler: SQLCompiler, **kw: Any) -> str:
    array, value = list(element.clauses)
    return (
        f"EXISTS (SELECT 1 FROM json_each({compiler.process(array, **kw)})"
        f" WHERE json_each.value = {compiler.process(value, **kw)})"
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

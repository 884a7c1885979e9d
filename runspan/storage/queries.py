"""Reading run history: trees, filtered runs, stats and read-only SQL.

:class:`RunStore` opens the database read-only (SQLite in ``mode=ro``, PostgreSQL sessions whose
transactions are read-only), so nothing here can change it. Every filter value is a bound
parameter.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from sqlalchemy import (
    URL,
    Engine,
    Float,
    Text,
    and_,
    case,
    column,
    func,
    literal,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy.exc import DBAPIError, StatementError

from runspan.storage.engine import create_reader_engine, database_url_from, described, safe_url
from runspan.storage.errors import DatabaseUnavailable, NotFoundError, QueryError
from runspan.storage.migrate import check_schema
from runspan.storage.schema import STATUSES, UNFINISHED_REASONS, runs
from runspan.storage.sqlfuncs import (
    json_array_contains,
    json_member_text,
    json_text,
    like_pattern,
)

# The runs_v view: runs with readable times and the cost of model runs.
runs_v = table(
    "runs_v",
    *(column(c.name, c.type) for c in runs.columns),
    column("cost_usd", Float()),
)
_v = runs_v.c

GroupBy = Literal["name", "model", "day", "node"]
GROUPS: dict[str, Any] = {
    "name": _v.name,
    "model": _v.model_name,
    "day": None,
    "node": _v.langgraph_node,
}
_EPOCH = dt.date(1970, 1, 1)
_PERCENTILES = (50, 95, 99)
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


@dataclass
class Run:
    """One stored run (or span), with its children when it comes from a tree."""

    run_id: str | None
    parent_run_id: str | None
    trace_id: str
    span_id: str
    parent_span_id: str | None
    service_name: str | None
    name: str
    run_type: str | None
    span_kind: str
    status: str
    error_type: str | None
    error_message: str | None
    start_ns: int
    end_ns: int | None
    duration_ms: float | None
    model_name: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cache_read_tokens: int | None
    cache_creation_tokens: int | None
    reasoning_tokens: int | None
    ttft_ms: float | None
    tags: list[str] | None
    metadata: Any
    attributes: Any
    events: Any
    inputs: Any
    outputs: Any
    unfinished_reason: str | None
    langgraph_node: str | None
    attempt: int | None
    resumes_trace_id: str | None
    cost_usd: float | None = None
    children: list[Run] = field(default_factory=list)

    def walk(self) -> Iterator[Run]:
        """This run and everything under it, depth first, in start order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def as_dict(self, *, children: bool = True) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "children"}
        if children:
            data["children"] = [child.as_dict() for child in self.children]
        return data


_RUN_FIELDS = [f.name for f in fields(Run) if f.name != "children"]


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list or count. Every field left ``None`` does not filter.

    Attributes:
        name: the run's name, exactly.
        run_type: ``chain``, ``llm``, ``tool``, ``retriever``, ``prompt``, ``parser``, ...
        status: ``running``, ``ok``, ``error``, ``unfinished``, ``interrupted`` or ``retried``.
        unfinished_reason: unfinished runs that ended this way: ``cancelled``, ``abandoned``,
            ``root_ended`` or ``expired``.
        node: runs of this LangGraph node (and of what runs inside it).
        since, until: start time bounds, in nanoseconds since the epoch.
        min_duration_ms, max_duration_ms: duration bounds.
        model: the model name, exactly.
        tag: a tag the run carries.
        metadata: a ``(key, value)`` pair in the run's metadata (compared as text).
        text: a text that the inputs or outputs contain (case-insensitive).
        roots_only: only runs that started a LangChain run tree.
        trace_id: only runs of this trace.
    """

    name: str | None = None
    run_type: str | None = None
    status: str | None = None
    unfinished_reason: str | None = None
    node: str | None = None
    since: int | None = None
    until: int | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    model: str | None = None
    tag: str | None = None
    metadata: tuple[str, str] | None = None
    text: str | None = None
    roots_only: bool = False
    trace_id: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise QueryError(f"status={self.status!r}: use one of {', '.join(STATUSES)}")
        reason = self.unfinished_reason
        if reason is not None and reason not in UNFINISHED_REASONS:
            raise QueryError(
                f"unfinished reason {reason!r}: use one of {', '.join(UNFINISHED_REASONS)}"
            )
        if reason is not None and self.status not in (None, "unfinished"):
            raise QueryError(f"a reason is for unfinished runs, not {self.status} ones")
        for name in ("min_duration_ms", "max_duration_ms"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise QueryError(f"{name}={value!r}: use a number of milliseconds, 0 or more")
        if self.metadata is not None:
            key = self.metadata[0]
            if not key or '"' in key:
                raise QueryError(f"metadata key {key!r}: use a non-empty key without quotes")

    def conditions(self) -> list[Any]:
        where: list[Any] = []
        if self.name is not None:
            where.append(_v.name == self.name)
        if self.run_type is not None:
            where.append(_v.run_type == self.run_type)
        if self.status is not None:
            where.append(_v.status == self.status)
        if self.unfinished_reason is not None:
            where.append(_v.unfinished_reason == self.unfinished_reason)
        if self.node is not None:
            where.append(_v.langgraph_node == self.node)
        if self.since is not None:
            where.append(_v.start_ns >= self.since)
        if self.until is not None:
            where.append(_v.start_ns < self.until)
        if self.min_duration_ms is not None:
            where.append(_v.duration_ms >= self.min_duration_ms)
        if self.max_duration_ms is not None:
            where.append(_v.duration_ms <= self.max_duration_ms)
        if self.model is not None:
            where.append(_v.model_name == self.model)
        if self.tag is not None:
            where.append(json_array_contains(_v.tags, literal(self.tag, Text())))
        if self.metadata is not None:
            key, value = self.metadata
            where.append(json_member_text(_v.metadata, literal(key, Text())) == str(value))
        if self.text is not None:
            pattern = like_pattern(self.text)
            where.append(
                json_text(_v.inputs).ilike(pattern, escape="\\")
                | json_text(_v.outputs).ilike(pattern, escape="\\")
            )
        if self.roots_only:
            where.append(and_(_v.run_id.is_not(None), _v.parent_run_id.is_(None)))
        if self.trace_id is not None:
            where.append(_v.trace_id == self.trace_id)
        return where


@dataclass(frozen=True)
class Stat:
    """Latency, errors, tokens and cost of one group of runs."""

    key: str | None
    runs: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def _run(row: Mapping[str, Any]) -> Run:
    return Run(**{name: row[name] for name in _RUN_FIELDS})


class RunStore:
    """Read-only access to a runspan database.

    Args:
        database_url: which; else ``RUNSPAN_DATABASE_URL``, else ``sqlite:///runspan.db``.
        engine: an engine to use instead (it is not made read-only).

    Raises:
        DatabaseNotFoundError: no SQLite file there (reading never creates one).
        SchemaError: not a runspan database, or at another schema version.
        DatabaseUnavailable: the database cannot be reached.
    """

    def __init__(self, database_url: str | URL | None = None, *, engine: Engine | None = None):
        self.engine = (
            engine if engine is not None else create_reader_engine(database_url_from(database_url))
        )
        check_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fetch(self, query: Any) -> list[Any]:
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(query).mappings())
        except DBAPIError as error:
            raise self._failure(error) from None

    def _failure(self, error: DBAPIError) -> Exception:
        message = described(error, self.engine.url)
        if message in ("not authorized", "authorization denied"):  # the reader's authorizer
            return QueryError(
                "runspan sql is read-only: this statement would change the database or write"
                " files beside it"
            )
        if type(error.orig).__name__ in ("OperationalError", "InterfaceError") and (
            error.connection_invalidated or "connect" in message.lower()
        ):
            return DatabaseUnavailable(f"cannot read {safe_url(self.engine.url)}: {message}")
        return QueryError(message)

    # --- runs ------------------------------------------------------------------------------

    def runs(
        self,
        where: RunFilter | None = None,
        *,
        limit: int = 50,
        order: Literal["newest", "slowest"] = "newest",
    ) -> list[Run]:
        """Runs matching ``where``, newest first (or slowest first), at most ``limit``."""
        if not isinstance(limit, int) or limit < 1:
            raise QueryError(f"limit={limit!r}: use a positive integer")
        ordering = _v.start_ns.desc() if order == "newest" else _v.duration_ms.desc()
        query = select(runs_v).where(*(where or RunFilter()).conditions())
        if order == "slowest":
            query = query.where(_v.duration_ms.is_not(None))
        query = query.order_by(ordering).limit(limit)
        return [_run(row) for row in self._fetch(query)]

    # --- trees -----------------------------------------------------------------------------

    def locate(self, run_or_trace_id: str) -> tuple[str, str | None]:
        """The trace id of a run (by LangChain run id or span id) or trace (by trace id), and
        the run's span id (``None`` for a trace id).

        Raises:
            QueryError: the id is neither a run id, a span id nor a trace id.
            NotFoundError: a run id or span id that no run has.
        """
        wanted = run_or_trace_id.strip().lower()
        run_id = _as_uuid(wanted)
        if run_id is not None:
            found = self._fetch(select(_v.trace_id, _v.span_id).where(_v.run_id == run_id))
            if found:
                return found[0]["trace_id"], found[0]["span_id"]
        if _HEX32.match(wanted.replace("-", "")):
            return wanted.replace("-", ""), None
        if _HEX16.match(wanted):
            found = self._fetch(select(_v.trace_id).where(_v.span_id == wanted))
            if found:
                return found[0]["trace_id"], wanted
        if run_id is None and not _HEX16.match(wanted):
            raise QueryError(
                f"{run_or_trace_id!r} is not an id: give a run id (a UUID), a trace id (32 hex"
                " digits) or a span id (16 hex digits)"
            )
        raise NotFoundError(f"no run or trace {run_or_trace_id!r} in this database")

    def tree(self, run_or_trace_id: str) -> list[Run]:
        """The tree under a run (by LangChain run id or span id) or of a whole trace (by trace
        id), as its roots: one, unless the trace has orphans or spans whose parent was recorded
        elsewhere (another service), each the root of its own part.

        Raises:
            QueryError: the id is neither a run id nor a trace id.
            NotFoundError: no run or trace has it.
        """
        trace_id, anchor = self.locate(run_or_trace_id)
        rows = self._fetch(select(runs_v).where(_v.trace_id == trace_id).order_by(_v.start_ns))
        if not rows:
            raise NotFoundError(f"no run or trace {run_or_trace_id!r} in this database")
        return _assemble([_run(row) for row in rows], anchor)

    def ended_runs(
        self,
        since: int | None = None,
        until: int | None = None,
        *,
        after: tuple[int, str, str] | None = None,
        limit: int = 1000,
    ) -> list[Run]:
        """Finished runs that ended in ``[since, until]`` (nanoseconds since the epoch), in end
        order, at most ``limit``; give the last one's ``(end_ns, trace_id, span_id)`` as
        ``after`` for the next page."""
        query = select(runs_v).where(_v.end_ns.is_not(None))
        if since is not None:
            query = query.where(_v.end_ns >= since)
        if until is not None:
            query = query.where(_v.end_ns <= until)
        if after is not None:
            query = query.where(
                tuple_(_v.end_ns, _v.trace_id, _v.span_id) > tuple_(*map(literal, after))
            )
        query = query.order_by(_v.end_ns, _v.trace_id, _v.span_id).limit(limit)
        return [_run(row) for row in self._fetch(query)]

    def count_ended(self, since: int | None = None, until: int | None = None) -> int:
        """How many runs :meth:`ended_runs` would give in all."""
        query = select(func.count().label("n")).select_from(runs_v).where(_v.end_ns.is_not(None))
        if since is not None:
            query = query.where(_v.end_ns >= since)
        if until is not None:
            query = query.where(_v.end_ns <= until)
        return int(self._fetch(query)[0]["n"])

    def runs_of_traces(self, trace_ids: Sequence[str]) -> list[Run]:
        """Every run of these traces, flat, in start order."""
        if not trace_ids:
            return []
        query = select(runs_v).where(_v.trace_id.in_(list(trace_ids))).order_by(_v.start_ns)
        return [_run(row) for row in self._fetch(query)]

    # --- stats -----------------------------------------------------------------------------

    def stats(self, by: GroupBy = "name", where: RunFilter | None = None) -> list[Stat]:
        """Count, error rate, p50/p95/p99 latency, tokens and cost per name, model or day.

        Percentiles are nearest-rank over finished runs, computed with window functions, so
        SQLite and PostgreSQL give the same figures.
        """
        if by not in GROUPS:
            raise QueryError(f"by={by!r}: group by one of {', '.join(GROUPS)}")
        key = _v.start_day if by == "day" else GROUPS[by]
        conditions = (where or RunFilter()).conditions()
        if by == "model":
            conditions.append(_v.model_name.is_not(None))
        if by == "node":
            conditions.append(_v.langgraph_node.is_not(None))
        base = (
            select(
                key.label("key"),
                _v.status,
                _v.duration_ms,
                _v.input_tokens,
                _v.output_tokens,
                _v.total_tokens,
                _v.cost_usd,
            )
            .where(*conditions)
            .subquery()
        )
        finished = base.c.duration_ms.is_not(None)
        ranked = select(
            base,
            func.row_number()
            .over(partition_by=[base.c.key, finished], order_by=base.c.duration_ms)
            .label("rank"),
            func.count().over(partition_by=[base.c.key, finished]).label("finished_count"),
        ).subquery()
        r = ranked.c
        done = r.duration_ms.is_not(None)
        percentiles = [
            func.min(case((and_(done, r.rank * 100 >= p * r.finished_count), r.duration_ms)))
            for p in _PERCENTILES
        ]
        errors = func.sum(case((r.status == "error", 1), else_=0))
        query = (
            select(
                r.key,
                func.count().label("runs"),
                errors.label("errors"),
                *(value.label(f"p{p}") for value, p in zip(percentiles, _PERCENTILES, strict=True)),
                func.sum(r.input_tokens).label("input_tokens"),
                func.sum(r.output_tokens).label("output_tokens"),
                func.sum(r.total_tokens).label("total_tokens"),
                func.sum(r.cost_usd).label("cost_usd"),
            )
            .group_by(r.key)
            .order_by(func.count().desc(), r.key)
        )
        return [
            Stat(
                key=_day_text(row["key"]) if by == "day" else row["key"],
                runs=row["runs"],
                errors=int(row["errors"] or 0),
                error_rate=(row["errors"] or 0) / row["runs"],
                p50_ms=row["p50"],
                p95_ms=row["p95"],
                p99_ms=row["p99"],
                input_tokens=_int(row["input_tokens"]),
                output_tokens=_int(row["output_tokens"]),
                total_tokens=_int(row["total_tokens"]),
                cost_usd=float(row["cost_usd"]) if row["cost_usd"] is not None else None,
            )
            for row in self._fetch(query)
        ]

    # --- SQL -------------------------------------------------------------------------------

    def sql(self, statement: str, parameters: Mapping[str, Any] | None = None) -> SqlResult:
        """Run one read-only SQL statement; ``:name`` placeholders take ``parameters``.

        Raises:
            QueryError: the statement is invalid, or tries to change the database.
        """
        try:
            with self.engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SET TRANSACTION READ ONLY"))
                result = connection.execute(text(statement), dict(parameters or {}))
                if not result.returns_rows:
                    raise QueryError("the statement returned no rows: runspan sql only reads")
                columns = list(result.keys())
                rows = [tuple(row) for row in result]
                connection.rollback()
                return SqlResult(columns, rows)
        except DBAPIError as error:
            raise self._failure(error) from None
        except StatementError as error:  # a placeholder without a value, say
            raise QueryError(str(error.orig)) from None
        except sqlite3.Warning as error:  # Python 3.10's sqlite3: two statements in one call
            raise QueryError(str(error)) from None


def _day_text(days: int | None) -> str | None:
    return None if days is None else (_EPOCH + dt.timedelta(days=int(days))).isoformat()


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _as_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _assemble(flat: Sequence[Run], anchor: str | None) -> list[Run]:
    """Link runs into a tree by span ids; the anchor's subtree, or the trace's."""
    by_span = {run.span_id: run for run in flat}
    roots: list[Run] = []
    for run in flat:  # in start order, so children are in start order too
        parent = by_span.get(run.parent_span_id) if run.parent_span_id else None
        if parent is not None and parent is not run:
            parent.children.append(run)
        else:
            roots.append(run)
    if anchor is not None:
        return [by_span[anchor]]
    return roots

"""What the query API returns and takes: stored runs, filters, statistics, SQL results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from sqlalchemy import BigInteger, Float, Text, and_, column, literal, table

from runspan.storage.errors import QueryError
from runspan.storage.schema import STATUSES, UNFINISHED_REASONS, runs, traces
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
# The traces_v view: traces with readable times and their cost, exact at the current prices.
traces_v = table("traces_v", *(column(c.name, c.type) for c in traces.columns))

GroupBy = Literal["name", "model", "day", "node", "feedback"]
GROUPS: dict[str, Any] = {
    "name": _v.name,
    "model": _v.model_name,
    "day": None,
    "node": _v.langgraph_node,
    "feedback": None,  # a feedback key's answers: RunStore.stats(feedback_key=...)
}


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
    first_chunk_ms: float | None
    cost_usd: float | None = None
    session_id: str | None = None  # the conversation the run belongs to
    user_id: str | None = None
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


RUN_FIELDS = [f.name for f in fields(Run) if f.name != "children"]


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
        model: the model name, or the dated names providers return for it (``gpt-4o-mini``
            finds ``gpt-4o-mini-2024-07-18`` too, ``gpt-4o`` does not find ``gpt-4o-mini``).
        tag: a tag the run carries, or several it carries all of.
        metadata: a ``(key, value)`` pair in the run's metadata (compared as text), or several
            pairs it has all of.
        text: a text that the inputs or outputs contain (case-insensitive).
        roots_only: only runs that started a LangChain run tree.
        skip_types: run types left out (the command line leaves out prompts and parsers).
        trace_id: only runs of this trace.
        session: only runs of this conversation (``session.id``).
        user: only runs of this user (``user.id``).
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
    tag: str | tuple[str, ...] | None = None
    metadata: tuple[str, str] | tuple[tuple[str, str], ...] | None = None
    text: str | None = None
    roots_only: bool = False
    trace_id: str | None = None
    skip_types: tuple[str, ...] = ()
    session: str | None = None
    user: str | None = None

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
        for key, _ in self.metadata_pairs():
            if not key or '"' in key:
                raise QueryError(f"metadata key {key!r}: use a non-empty key without quotes")

    def tags(self) -> tuple[str, ...]:
        """The tags a run must carry, all of them."""
        return (self.tag,) if isinstance(self.tag, str) else tuple(self.tag or ())

    def metadata_pairs(self) -> tuple[tuple[str, str], ...]:
        """The metadata a run must have, every pair."""
        given = self.metadata
        if not given:
            return ()
        if len(given) == 2 and all(isinstance(part, str) for part in given):
            return (given,)  # type: ignore[return-value]
        return tuple(given)  # type: ignore[arg-type]

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
            where.append(model_matches(_v.model_name, self.model))
        for tag in self.tags():
            where.append(json_array_contains(_v.tags, literal(tag, Text())))
        for key, value in self.metadata_pairs():
            where.append(json_member_text(_v.metadata, literal(key, Text())) == str(value))
        if self.text is not None:
            pattern = like_pattern(self.text)
            where.append(
                json_text(_v.inputs).ilike(pattern, escape="\\")
                | json_text(_v.outputs).ilike(pattern, escape="\\")
            )
        if self.skip_types:
            where.append(_v.run_type.is_(None) | _v.run_type.not_in(self.skip_types))
        if self.roots_only:
            where.append(and_(_v.run_id.is_not(None), _v.parent_run_id.is_(None)))
        if self.trace_id is not None:
            where.append(_v.trace_id == self.trace_id)
        if self.session is not None:
            where.append(_v.session_id == self.session)
        if self.user is not None:
            where.append(_v.user_id == self.user)
        return where


def day_text(days: int | None) -> str | None:
    """A ``start_day`` (days since the epoch) as an ISO date."""
    return (
        None if days is None else (dt.date(1970, 1, 1) + dt.timedelta(days=int(days))).isoformat()
    )


def model_matches(column: Any, model: str) -> Any:
    """``column`` names ``model``, or a dated name of it."""
    # Providers answer with dated names: the requested name, "-" and a date (OpenAI's
    # -2024-07-18, Anthropic's -20241022). "-20" keeps gpt-4o from finding gpt-4o-mini.
    dated = like_pattern(model).removeprefix("%").removesuffix("%") + "-20%"
    return (column == model) | column.like(dated, escape="\\")


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


@dataclass(frozen=True)
class Trace:
    """One stored trace: its root's name and status, and the totals of its runs."""

    trace_id: str
    root_run_id: str | None
    service_name: str | None
    name: str | None
    status: str
    start_ns: int
    end_ns: int | None
    duration_ms: float | None
    run_count: int
    error_count: int
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    session_id: str | None = None
    user_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


TRACE_FIELDS = [f.name for f in fields(Trace)]

# The sessions_v view: one row per conversation (and user).
sessions_v = table(
    "sessions_v",
    column("session_id", Text()),
    column("user_id", Text()),
    column("first_ns", BigInteger()),
    column("last_ns", BigInteger()),
    column("turns", BigInteger()),
    column("runs", BigInteger()),
    column("errors", BigInteger()),
    column("input_tokens", BigInteger()),
    column("output_tokens", BigInteger()),
    column("total_tokens", BigInteger()),
    column("cost_usd", Float()),
)


@dataclass(frozen=True)
class Session:
    """One conversation: its user, first and last time, turns (traces), runs, errors, tokens
    and cost."""

    session_id: str
    user_id: str | None
    first_ns: int
    last_ns: int
    turns: int
    runs: int
    errors: int
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


SESSION_FIELDS = [f.name for f in fields(Session)]

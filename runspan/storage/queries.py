"""Reading run history: trees, filtered runs, stats and read-only SQL.

:class:`RunStore` opens the database read-only (SQLite in ``mode=ro``, PostgreSQL sessions whose
transactions are read-only), so nothing here can change it. Every filter value is a bound
parameter.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sqlalchemy import (
    URL,
    Connection,
    Engine,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    text,
    tuple_,
)
from sqlalchemy.exc import DBAPIError, StatementError

from runspan.attributes import ORPHAN
from runspan.storage.engine import (
    create_reader_engine,
    described,
    read_database_url_from,
    safe_url,
)
from runspan.storage.errors import DatabaseUnavailable, NotFoundError, QueryError
from runspan.storage.latest_sessions import latest_session_ids
from runspan.storage.migrate import check_schema
from runspan.storage.readonly import check_reader_role, check_reading_statement
from runspan.storage.records import (
    GROUPS,
    RUN_FIELDS,
    SESSION_FIELDS,
    TRACE_FIELDS,
    GroupBy,
    Run,
    RunFilter,
    Session,
    SqlResult,
    Stat,
    Trace,
    day_text,
    runs_v,
    sessions_v,
    traces_v,
)
from runspan.storage.rollup_search import newest_runs
from runspan.storage.rollup_stats import rolled_stats
from runspan.storage.schema import (
    DAY_NS,
    feedback,
    model_prices,
    runs,
    slowest_runs,
    span_names,
    traces,
)
from runspan.storage.search import MAX_SEARCH_DEPTH, TraceSearch
from runspan.storage.slowest import PER_DAY
from runspan.storage.sqlfuncs import json_member_text

# Trace search reads at most this many newest spans (or 20 a trace asked for) before it groups.
_NEWEST_SPANS = 2000

_v = runs_v.c
# The most held slowest runs looked up at a time (under every database's parameter limit).
_SLOWEST_PAGE = 500
_PERCENTILES = (50, 95, 99)
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_PREFIX = re.compile(r"^[0-9a-f][0-9a-f-]{3,}$")


def _run(row: Mapping[str, Any]) -> Run:
    return Run(**{name: row[name] for name in RUN_FIELDS})


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
            engine
            if engine is not None
            else create_reader_engine(read_database_url_from(database_url))
        )
        try:
            check_schema(self.engine)
        except Exception:
            if engine is None:  # its kept connection goes with it
                self.engine.dispose()
            raise

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

    def _from_first_start(
        self, trace_ids: Sequence[str], connection: Connection | None = None
    ) -> list[Any]:
        """The condition that keeps a read of these traces' runs to the days from their first
        start, on PostgreSQL, where runs is partitioned by day (revision 0018): the traces'
        stored starts, as a constant by which the planner leaves every older partition out.
        A trace's stored start is its runs' first, written in their transaction. Read on
        ``connection`` when the caller holds one."""
        if self.engine.dialect.name != "postgresql" or not trace_ids:
            return []
        # Each trace's start, through its key: min() in SQL is read by the planner as the
        # first of the index of start times that is one of them (379 ms at a million traces).
        query = select(traces.c.start_ns).where(traces.c.trace_id.in_(list(trace_ids)))
        if connection is None:
            starts = [row["start_ns"] for row in self._fetch(query)]
        else:
            starts = list(connection.execute(query).scalars())
        return [_v.start_ns >= min(starts)] if starts else []

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
        where = where or RunFilter()
        if order == "slowest":
            return self._slowest(where, limit)
        if where.name is not None:
            return self._newest_of_name(where, limit)
        narrowed = newest_runs(self._fetch, where, limit)
        if narrowed is not None:
            return [_run(row) for row in narrowed]
        query = select(runs_v).where(*where.conditions())
        query = query.order_by(_v.start_ns.desc()).limit(limit)
        return [_run(row) for row in self._fetch(query)]

    def _newest_of_name(self, where: RunFilter, limit: int) -> list[Run]:
        """The newest runs of a name: the index of (name, start_day, status) gives its newest
        days first, so the ids are found by day, then start time, and only a day's runs are
        sorted. Ordered by start time alone, a planner reads either every run of the name
        (SQLite: seconds for a name with millions) or the whole history newest first until
        enough match (a rare status: 0.4 s at ten million runs)."""
        ids = (
            select(_v.id, _v.start_ns)
            .where(*where.conditions())
            .order_by(_v.start_day.desc(), _v.start_ns.desc())
            .limit(limit)
        )
        found = self._fetch(ids)
        if not found:
            return []
        # Their starts too: on PostgreSQL, partitioned by day (revision 0018), a lookup by id
        # alone looks into every day's partition (141 ms for 50 runs at ninety days).
        starts = [row["start_ns"] for row in found]
        query = (
            select(runs_v)
            .where(
                _v.id.in_([row["id"] for row in found]),
                _v.start_ns.between(min(starts), max(starts)),
            )
            .order_by(_v.start_ns.desc())
        )
        return [_run(row) for row in self._fetch(query)]

    def _slowest(self, where: RunFilter, limit: int) -> list[Run]:
        """The slowest runs matching ``where``, from ``slowest_runs`` (the slowest of each day
        and run type, runspan.storage.slowest), then from ``runs`` for the groups it cannot
        vouch for: a group that holds its full hundred, whose floor (the least of them) is not
        below the slowest ``limit`` found, may have matching runs it does not hold."""
        s = slowest_runs.c
        conditions = [*where.conditions(), _v.duration_ms.is_not(None)]
        held = select(s.trace_id, s.span_id).order_by(s.duration_ms.desc(), s.trace_id, s.span_id)
        floors = (
            select(s.start_day, s.run_type, func.min(s.duration_ms).label("floor"))
            .group_by(s.start_day, s.run_type)
            .having(func.count() >= PER_DAY)
        )
        narrowing = []  # what the filter says of the groups that can hold a match
        if where.since is not None:
            narrowing.append(s.start_day >= where.since // DAY_NS)
        if where.until is not None:
            narrowing.append(s.start_day <= where.until // DAY_NS)
        if where.run_type is not None:
            narrowing.append(s.run_type == where.run_type)
        if where.skip_types:
            narrowing.append(s.run_type.not_in(where.skip_types))
        if where.model is not None:  # only model calls have a model (as llm_calls has them)
            narrowing.append(s.run_type.in_(("llm", "")))
        held, floors = held.where(*narrowing), floors.where(*narrowing)
        try:
            with self.engine.connect() as connection:
                # The held runs, slowest first, a page at a time, each page's runs looked up by
                # trace id (a planner given the join may scan runs for the filter instead).
                found: list[Any] = []
                start, size = 0, 2 * limit  # most often the first held runs are the answer
                while True:
                    page = [
                        (trace, span)
                        for trace, span in connection.execute(held.limit(size).offset(start))
                    ]
                    if not page:
                        break
                    wanted = set(page)
                    trace_ids = sorted({trace for trace, _ in page})
                    first = self._from_first_start(trace_ids, connection)
                    rows = connection.execute(
                        select(runs_v).where(_v.trace_id.in_(trace_ids), *first, *conditions)
                    ).mappings()
                    found += [row for row in rows if (row["trace_id"], row["span_id"]) in wanted]
                    if len(found) >= limit or len(page) < size:
                        break
                    start, size = start + size, min(2 * size, _SLOWEST_PAGE)
                found = sorted(found, key=lambda row: -row["duration_ms"])[:limit]
                least = found[-1]["duration_ms"] if len(found) == limit else None
                for day, run_type, floor in connection.execute(floors):
                    if least is not None and floor < least:
                        continue  # every run of that group slower than `least` is held
                    # A range of start_ns rather than start_day: with --since, the planner then
                    # reads the start time index over the tighter of the two ranges.
                    group = (
                        _v.start_ns >= day * DAY_NS,
                        _v.start_ns < (day + 1) * DAY_NS,
                        _v.run_type == run_type if run_type else _v.run_type.is_(None),
                    )
                    query = select(runs_v).where(*conditions, *group)
                    if least is not None:
                        query = query.where(_v.duration_ms > least)
                    query = query.order_by(_v.duration_ms.desc()).limit(limit)
                    seen = {(row["trace_id"], row["span_id"]) for row in found}
                    found += [
                        row
                        for row in connection.execute(query).mappings()
                        if (row["trace_id"], row["span_id"]) not in seen
                    ]
                    found = sorted(found, key=lambda row: -row["duration_ms"])[:limit]
                    least = found[-1]["duration_ms"] if len(found) == limit else None
        except DBAPIError as error:
            raise self._failure(error) from None
        return [_run(row) for row in found]

    def new_runs(self, where: RunFilter | None, after: int) -> tuple[list[Run], int]:
        """Runs stored after the row ``after`` (``runs.id``; 0 for the start), oldest first,
        and the last row seen: what ``runs --follow`` prints as it comes."""
        query = select(runs_v, _v.id.label("row")).where(*(where or RunFilter()).conditions())
        rows = self._fetch(query.where(_v.id > after).order_by(_v.id).limit(1000))
        return [_run(row) for row in rows], (rows[-1]["row"] if rows else after)

    def last_row(self) -> int:
        """The newest row of ``runs`` (0 for none): where following starts."""
        return int(self._fetch(select(func.coalesce(func.max(_v.id), 0).label("n")))[0]["n"])

    def traces(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 50,
        session: str | None = None,
        user: str | None = None,
    ) -> list[Trace]:
        """Traces, newest first: the root's name and status, runs, errors, tokens, cost."""
        if not isinstance(limit, int) or limit < 1:
            raise QueryError(f"limit={limit!r}: use a positive integer")
        t = traces_v.c
        query = select(*(t[f] for f in TRACE_FIELDS))
        if name is not None:
            query = query.where(t.name == name)
        if status is not None:
            query = query.where(t.status == status)
        if since is not None:
            query = query.where(t.start_ns >= since)
        if until is not None:
            query = query.where(t.start_ns < until)
        if session is not None:
            query = query.where(t.session_id == session)
        if user is not None:
            query = query.where(t.user_id == user)
        query = query.order_by(t.start_ns.desc()).limit(limit)
        return [Trace(**{f: row[f] for f in TRACE_FIELDS}) for row in self._fetch(query)]

    def sessions(
        self,
        *,
        user: str | None = None,
        since: int | None = None,
        limit: int = 50,
    ) -> list[Session]:
        """Conversations, most recent last turn first: turns, runs, errors, tokens, cost."""
        if not isinstance(limit, int) or limit < 1:
            raise QueryError(f"limit={limit!r}: use a positive integer")
        s = sessions_v.c
        query = select(*(s[f] for f in SESSION_FIELDS))
        if user is not None:
            # sessions_v has no index by user: a user's latest traces name their sessions.
            chosen = latest_session_ids(self._fetch, limit=limit, user=user, since=since)
            if chosen is not None:  # else too many to name: every session is read
                query = query.where(s.session_id.in_(chosen))
            query = query.where(s.user_id == user)
        if since is not None:
            query = query.where(s.last_ns >= since)
        query = query.order_by(s.last_ns.desc()).limit(limit)
        return [Session(**{f: row[f] for f in SESSION_FIELDS}) for row in self._fetch(query)]

    def session_trace_ids(self, session_id: str) -> list[str]:
        """The traces (turns) of a conversation, in the order they started."""
        t = traces_v.c
        query = select(t.trace_id).where(t.session_id == session_id).order_by(t.start_ns)
        return [row["trace_id"] for row in self._fetch(query)]

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
            if _PREFIX.match(wanted):
                return self._locate_prefix(wanted, run_or_trace_id)
            raise QueryError(
                f"{run_or_trace_id!r} is not an id: give a run id (a UUID), a trace id (32 hex"
                " digits), a span id (16 hex digits), or the first 4 or more characters of one"
            )
        raise NotFoundError(f"no run or trace {run_or_trace_id!r} in this database")

    def _locate_prefix(self, prefix: str, given: str) -> tuple[str, str | None]:
        """The one run, trace or span whose id starts with ``prefix``, as git takes a commit's.

        Ids are hex (and a run id's dashes), all below "g": ``id >= p AND id < p || 'g'`` is a
        prefix match that the ids' indexes serve.
        """
        bare = prefix.replace("-", "")

        def between(column: Any, start: str) -> Any:
            return and_(column >= start, column < start + "g")

        traces = {
            r["trace_id"]
            for r in self._fetch(
                select(_v.trace_id).where(between(_v.trace_id, bare)).distinct().limit(2)
            )
        }
        found = {
            (r["trace_id"], r["span_id"])
            for r in self._fetch(
                select(_v.trace_id, _v.span_id, _v.run_id)
                .where(between(_v.run_id, prefix) | between(_v.span_id, bare))
                .limit(3)
            )
        }
        # A root run whose UUID is its trace's id is the same thing found twice: the trace.
        runs = {(trace, span) for trace, span in found if trace not in traces}
        matches = [(trace, None) for trace in traces] + sorted(runs)
        if not matches:
            raise NotFoundError(f"no run or trace starts with {given!r} in this database")
        if len(matches) > 1:
            raise QueryError(f"{given!r} starts more than one id: give more of it")
        trace_id, span_id = matches[0]
        return trace_id, span_id

    def tree(self, run_or_trace_id: str) -> list[Run]:
        """The tree under a run (by LangChain run id or span id) or of a whole trace (by trace
        id), as its roots: one, unless the trace has orphans or spans whose parent was recorded
        elsewhere (another service), each the root of its own part.

        Raises:
            QueryError: the id is neither a run id nor a trace id.
            NotFoundError: no run or trace has it.
        """
        trace_id, anchor = self.locate(run_or_trace_id)
        rows = self._fetch(
            select(runs_v)
            .where(_v.trace_id == trace_id, *self._from_first_start([trace_id]))
            .order_by(_v.start_ns)
        )
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
        query = (
            select(runs_v)
            .where(_v.trace_id.in_(list(trace_ids)), *self._from_first_start(trace_ids))
            .order_by(_v.start_ns)
        )
        return [_run(row) for row in self._fetch(query)]

    # --- stats -----------------------------------------------------------------------------

    # --- prices ---------------------------------------------------------------------------

    def prices(self, model: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Rows of ``model_prices``; for a ``model``, those that match its name, the one a run
        of it is priced with first (yours, then imported, then seeded; then the longest
        pattern; then the latest)."""
        p = model_prices.c
        origin_rank = case((p.origin == "import", 1), (p.origin == "seed", 2), else_=0)
        query = select(
            p.model_pattern,
            p.provider,
            p.input_usd_per_mtok,
            p.output_usd_per_mtok,
            p.cache_read_usd_per_mtok,
            p.cache_write_usd_per_mtok,
            p.valid_from_ns,
            p.origin,
            p.source,
        )
        if model is not None:
            query = query.where(literal(model.lower()).like(p.model_pattern))
        query = query.order_by(
            origin_rank, func.length(p.model_pattern).desc(), p.valid_from_ns.desc()
        ).limit(limit)
        return [dict(row) for row in self._fetch(query)]

    # --- what Jaeger asks: services, operations, trace search, dependencies ----------------

    def services(self) -> list[str]:
        """Every service name with stored runs."""
        query = select(span_names.c.service_name).distinct()
        return sorted(row["service_name"] for row in self._fetch(query))

    def operations(self, service: str, span_kind: str | None = None) -> list[tuple[str, str]]:
        """The (name, span kind) pairs of a service's runs."""
        n = span_names.c
        query = select(n.name, n.span_kind).where(n.service_name == service)
        if span_kind:
            query = query.where(n.span_kind == span_kind.lower())
        return sorted((row["name"], row["span_kind"]) for row in self._fetch(query))

    def find_traces(self, search: TraceSearch) -> list[tuple[str, int, int]]:
        """The traces with a span matching ``search``, newest first: (trace id, the first
        matching span's start, the last one's end)."""
        depth = min(max(search.depth, 1), MAX_SEARCH_DEPTH)
        conditions = search.conditions()
        spans = select(
            _v.trace_id, func.min(_v.start_ns).label("start"), func.max(_v.end_ns).label("end")
        ).where(*conditions)
        # The newest matching spans, through the index of start times: the first ``depth``
        # traces they name are the answer, found without grouping every span of the range. A
        # rare filter can need more spans than were read: then the range is grouped.
        most = max(_NEWEST_SPANS, 20 * depth)
        newest = self._fetch(
            select(_v.trace_id).where(*conditions).order_by(_v.start_ns.desc()).limit(most)
        )
        chosen = list(dict.fromkeys(row["trace_id"] for row in newest))[:depth]
        if len(chosen) < depth and len(newest) == most:
            grouped = spans.group_by(_v.trace_id).order_by(func.max(_v.start_ns).desc())
            found = self._fetch(grouped.limit(depth))
        else:
            found = self._fetch(
                spans.where(_v.trace_id.in_(chosen), *self._from_first_start(chosen)).group_by(
                    _v.trace_id
                )
            )
            order = {trace_id: place for place, trace_id in enumerate(chosen)}
            found.sort(key=lambda row: order[row["trace_id"]])
        return [(row["trace_id"], row["start"], row["end"]) for row in found]

    def dependencies(
        self, since_ns: int | None = None, until_ns: int | None = None
    ) -> list[tuple[str, str, int]]:
        """Calls between services: (parent service, child service, how many), from runs whose
        parent ran in another service (OTLP from other processes). Read from ``runs``, not
        ``runs_v``: the view priced every run of the day twice, for a cost no one asked (a day
        of ten million runs: 391 ms, against 270)."""
        if len(self.services()) < 2:  # span_names has every service: one calls no other
            return []
        child, parent = runs.alias("child"), runs.alias("parent")
        # Only a span whose parent is not a run its handler recorded can have a parent in
        # another service: one without a parent run (a root, another instrumentation's span) or
        # an orphan (a parent run the handler never saw, its span another's). A run recorded
        # with its parent run shares its parent's service: one handler, one tracer provider.
        # The day's other runs, most of a LangChain history, are not looked up (a day of ten
        # million runs: 249 ms on SQLite and 493 on PostgreSQL, the join of every run).
        calls_from_outside = child.c.parent_span_id.is_not(None) & (
            child.c.parent_run_id.is_(None)
            | json_member_text(child.c.attributes, literal(ORPHAN, Text())).is_not(None)
        )
        calls = select(child.c.service_name.label("child")).where(calls_from_outside)
        if since_ns is not None:
            calls = calls.where(child.c.start_ns >= since_ns)
        if until_ns is not None:
            calls = calls.where(child.c.start_ns <= until_ns)
        from_trace_start = []
        if self.engine.dialect.name == "postgresql":
            # runs is partitioned by day (revision 0018): a parent starts no earlier than its
            # trace, so each lookup reads the days from the trace's start only (pruned as it
            # runs), not every day's partition (3.6 s a day at ten million runs).
            trace = traces.alias("trace")
            calls = calls.join(trace, trace.c.trace_id == child.c.trace_id)
            from_trace_start.append(parent.c.start_ns >= trace.c.start_ns)
        # The parent looked up per call (a subquery no planner turns into a join of every run).
        parent_service = (
            select(parent.c.service_name)
            .where(
                parent.c.trace_id == child.c.trace_id,
                parent.c.span_id == child.c.parent_span_id,
                *from_trace_start,
            )
            .limit(1)
            .scalar_subquery()
        )
        found = calls.add_columns(parent_service.label("parent")).subquery("calls")
        query = (
            select(found.c.parent, found.c.child, func.count().label("calls"))
            .where(found.c.parent != found.c.child)
            .group_by(found.c.parent, found.c.child)
            .order_by(found.c.parent, found.c.child)
        )
        return [(row["parent"], row["child"], row["calls"]) for row in self._fetch(query)]

    def stats(
        self,
        by: GroupBy = "name",
        where: RunFilter | None = None,
        *,
        feedback_key: str | None = None,
    ) -> list[Stat]:
        """Count, error rate, p50/p95/p99 latency, tokens and cost per name, model, day, node,
        or (``by="feedback"``) per answer to the feedback key ``feedback_key``: its latest value,
        else score, on each run that has one.

        Percentiles are nearest-rank over finished runs, computed with window functions, so
        SQLite and PostgreSQL give the same figures. Over the whole days and hours that the
        rollups hold (``runs_daily``, ``runs_hourly``) they come from their histograms instead,
        within half a percent of that figure; counts, tokens and costs stay exact.
        """
        if by not in GROUPS:
            raise QueryError(f"by={by!r}: group by one of {', '.join(GROUPS)}")
        rolled = rolled_stats(self._fetch, by, where or RunFilter(), _PERCENTILES)
        if rolled is not None:
            return rolled
        conditions = (where or RunFilter()).conditions()
        if by == "feedback":
            if not feedback_key:
                raise QueryError("grouping by feedback needs the feedback key (such as 'thumbs')")
            key = _feedback_answer(feedback_key)
            conditions.append(key.is_not(None))
        else:
            key = _v.start_day if by == "day" else GROUPS[by]
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
                key=day_text(row["key"]) if by == "day" else row["key"],
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
                    check_reading_statement(statement)
                    connection.execute(text("SET TRANSACTION READ ONLY"))
                    check_reader_role(connection)
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


def _feedback_answer(key: str) -> Any:
    """The latest answer (value, else score as text) to feedback ``key`` on each run."""
    given, mine = feedback.alias("given"), feedback.alias("latest")
    latest = (
        select(func.max(mine.c.id))
        .where(mine.c.run_id == _v.run_id, mine.c.key == key)
        .correlate(runs_v)
        .scalar_subquery()
    )
    answer = func.coalesce(given.c.value, cast(given.c.score, String))
    return select(answer).where(given.c.id == latest).correlate(runs_v).scalar_subquery()


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

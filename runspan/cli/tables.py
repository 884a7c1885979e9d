"""Listings for people: runs, traces and statistics as tables that fit the terminal.

A table too wide for the terminal drops its least useful columns first (cost before tokens
before the model, and so on), never cutting an id or a model name mid-word; piped, every column
is kept and nothing is cut.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from runspan.cli.render import (
    STATUS_STYLES,
    cost_text,
    duration_text,
    name_text,
    short_ids,
    status_text,
    tokens_text,
)
from runspan.storage import Run, Session, Stat, Trace

Cell = str | Text


@dataclass(frozen=True)
class Column:
    title: str
    keep: int  # the higher, the longer it stays when the terminal is narrow
    justify: str = "left"
    whole: bool = False  # never wrapped: ids and model names


def fitted(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int | None) -> Table:
    """A table of the columns that fit ``width`` (all of them for ``None``)."""
    plain = [[cell.plain if isinstance(cell, Text) else cell for cell in row] for row in rows]

    def needs(index: int) -> int:  # the content, its padding and a border
        return max([len(columns[index].title), *(len(row[index]) for row in plain)]) + 3

    kept = list(range(len(columns)))
    while width is not None and len(kept) > 1 and sum(map(needs, kept)) + 1 > width:
        kept.remove(min(kept, key=lambda index: columns[index].keep))
    table = Table(header_style="bold")
    for index in kept:
        column = columns[index]
        table.add_column(
            column.title,
            justify=column.justify,  # type: ignore[arg-type]
            no_wrap=column.whole,
        )
    for row in rows:
        table.add_row(*(row[index] for index in kept))
    return table


def _started(start_ns: int) -> str:
    return dt.datetime.fromtimestamp(start_ns / 1e9, tz=dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


_RUN_COLUMNS = (
    Column("started (UTC)", 5),
    Column("run id", 9, whole=True),
    Column("name", 8),
    Column("type", 2),
    Column("status", 7),
    Column("duration", 6, justify="right"),
    Column("model", 4, whole=True),
    Column("tokens", 3, justify="right"),
    Column("cost", 1, justify="right"),
)


def runs_table(found: Sequence[Run], *, width: int | None = None, short: bool = False) -> Table:
    shown = short_ids([run.run_id or run.span_id for run in found]) if short else {}
    rows: list[list[Cell]] = []
    for run in found:
        ident = run.run_id or run.span_id
        rows.append(
            [
                _started(run.start_ns),
                shown.get(ident, ident) if run.run_id else f"span {shown.get(ident, ident)}",
                name_text(run),
                run.run_type or "",
                status_text(run),
                duration_text(run.duration_ms),
                run.model_name or "",
                tokens_text(run),
                cost_text(run.cost_usd),
            ]
        )
    return fitted(_RUN_COLUMNS, rows, width)


_TRACE_COLUMNS = (
    Column("started (UTC)", 5),
    Column("trace id", 9, whole=True),
    Column("root", 8),
    Column("status", 7),
    Column("runs", 4, justify="right"),
    Column("errors", 3, justify="right"),
    Column("duration", 6, justify="right"),
    Column("tokens", 2, justify="right"),
    Column("cost", 1, justify="right"),
)


def traces_table(found: Sequence[Trace], *, width: int | None = None, short: bool = False) -> Table:
    """Traces, one a row: when, id, root, status, runs, errors, duration, tokens, cost."""
    shown = short_ids([trace.trace_id for trace in found]) if short else {}
    rows: list[list[Cell]] = [
        [
            _started(trace.start_ns),
            shown.get(trace.trace_id, trace.trace_id),
            trace.name or "",
            Text(trace.status, style=STATUS_STYLES.get(trace.status, "")),
            str(trace.run_count),
            str(trace.error_count) if trace.error_count else "",
            duration_text(trace.duration_ms),
            tokens_text(trace),
            cost_text(trace.cost_usd),
        ]
        for trace in found
    ]
    return fitted(_TRACE_COLUMNS, rows, width)


_SESSION_COLUMNS = (
    Column("last turn (UTC)", 5),
    Column("session", 9, whole=True),
    Column("user", 8, whole=True),
    Column("turns", 7, justify="right"),
    Column("runs", 3, justify="right"),
    Column("errors", 4, justify="right"),
    Column("tokens", 2, justify="right"),
    Column("cost", 6, justify="right"),
)


def sessions_table(found: Sequence[Session], *, width: int | None = None) -> Table:
    """Conversations, one a row: last turn, id, user, turns, runs, errors, tokens, cost."""
    rows: list[list[Cell]] = [
        [
            _started(session.last_ns),
            session.session_id,
            session.user_id or "",
            str(session.turns),
            str(session.runs),
            str(session.errors) if session.errors else "",
            tokens_text(session),
            cost_text(session.cost_usd),
        ]
        for session in found
    ]
    return fitted(_SESSION_COLUMNS, rows, width)


def stats_table(stats: Sequence[Stat], by: str, *, width: int | None = None) -> Table:
    columns = (
        Column(by, 9, whole=True),
        Column("runs", 8, justify="right"),
        Column("errors", 5, justify="right"),
        Column("error rate", 7, justify="right"),
        Column("p50", 6, justify="right"),
        Column("p95", 4, justify="right"),
        Column("p99", 3, justify="right"),
        Column("tokens", 2, justify="right"),
        Column("cost", 1, justify="right"),
    )
    rows: list[list[Cell]] = [
        [
            stat.key if stat.key is not None else "—",
            str(stat.runs),
            str(stat.errors),
            f"{stat.error_rate:.1%}",
            duration_text(stat.p50_ms),
            duration_text(stat.p95_ms),
            duration_text(stat.p99_ms),
            tokens_text(stat),
            cost_text(stat.cost_usd),
        ]
        for stat in stats
    ]
    return fitted(columns, rows, width)

"""Reading run history: ``runs``, ``show``, ``stats``, ``sql``, ``prune`` and ``db upgrade``."""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any

import click
from rich.console import Console

from runspan.cli.app import (
    chosen_format,
    database_option,
    errors_as_messages,
    format_option,
    json_option,
    main,
    print_json,
    print_link,
    print_records,
    print_trees,
)
from runspan.cli.arguments import filter_options, parse_age, parse_moment, run_filter
from runspan.exporters import configured_jaeger_url, jaeger_trace_url
from runspan.storage import (
    Run,
    RunStore,
    Trace,
    create_reader,
    database_url_from,
    prune,
    safe_url,
    upgrade_database,
)

# Jaeger links printed under a list of runs, one per trace.
_LINKS_SHOWN = 5


def _console() -> Console:
    """The terminal's width in a terminal; piped, no width, so that no value is cut."""
    console = Console()
    return console if console.is_terminal else Console(width=100_000)


def _width(console: Console) -> int | None:
    return console.width if console.is_terminal else None


@main.command()
@filter_options
@click.option("--slowest", is_flag=True, help="Slowest first instead of newest first.")
@click.option("--follow", is_flag=True, help="Then print new runs as they are stored (Ctrl-C).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@database_option
@json_option
@format_option
def runs(
    *,
    slowest: bool,
    limit: int,
    follow: bool,
    database_url: str | None,
    as_json: bool,
    output_format: str | None,
    **options: Any,
) -> None:
    """List runs, newest first, filtered; --follow then prints new ones as they are stored."""
    with errors_as_messages(), RunStore(database_url) as store:
        jaeger = configured_jaeger_url()
        # Prompts and parsers are steps of nearly every chain: listed when asked for (--all).
        where = run_filter(options, skip=("prompt", "parser"))
        # Where following starts: read before the listing, so no run falls between the two.
        followed_from = store.last_row() if follow else 0
        found = store.runs(where, limit=limit, order="slowest" if slowest else "newest")
    chosen = chosen_format(output_format, as_json)
    _print_runs(found, chosen, jaeger)
    sys.stdout.flush()
    if follow:
        from runspan.cli.follow import follow_runs  # noqa: PLC0415

        with errors_as_messages():
            follow_runs(database_url, where, chosen, after=followed_from)


def _print_runs(found: list[Run], chosen: str, jaeger: str | None) -> None:
    if chosen != "table":
        records = [
            {
                **run.as_dict(children=False),
                "jaeger_url": jaeger_trace_url(run.trace_id, jaeger) if jaeger else None,
            }
            for run in found
        ]
        print_records(records, chosen)
        return
    from runspan.cli.tables import runs_table  # noqa: PLC0415 - rich tables only when drawing

    console = _console()
    if not found:
        console.print("no runs match")
        return
    # In a terminal, ids as short unique prefixes (any command takes them); piped, whole.
    console.print(runs_table(found, width=_width(console), short=console.is_terminal))
    traces = list(dict.fromkeys(run.trace_id for run in found))
    if jaeger is None:
        return
    for trace_id in traces[:_LINKS_SHOWN]:
        print_link(console, "Jaeger", jaeger_trace_url(trace_id, jaeger))
    if len(traces) > _LINKS_SHOWN:
        console.print(f"and {len(traces) - _LINKS_SHOWN} more traces (--json gives every link)")


@main.command()
@click.option("--name", help="Traces whose root has this name.")
@click.option("--status", help="ok, error, running, unfinished, interrupted.")
@click.option("--since", help="Started after: an age (2h, 30d) or a date (2026-11-24).")
@click.option("--until", help="Started before: an age or a date.")
@click.option("--session", help="The turns of this conversation (session.id).")
@click.option("--user", help="Traces of this user (user.id).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--follow", is_flag=True, help="Then print new traces as they appear (Ctrl-C).")
@database_option
@json_option
@format_option
def traces(
    *,
    follow: bool,
    name: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    session: str | None,
    user: str | None,
    limit: int,
    database_url: str | None,
    as_json: bool,
    output_format: str | None,
) -> None:
    """List traces, newest first, with their runs, errors, duration, tokens and cost; --follow
    then prints new ones as they appear."""
    with errors_as_messages(), RunStore(database_url) as store:
        where: dict[str, Any] = {
            "name": name,
            "status": status,
            "since": parse_moment(since) if since else None,
            "until": parse_moment(until) if until else None,
            "session": session,
            "user": user,
        }
        seen = {trace.trace_id for trace in store.traces(limit=100, **where)} if follow else set()
        found = store.traces(limit=limit, **where)
    chosen = chosen_format(output_format, as_json)
    _print_traces(found, chosen)
    sys.stdout.flush()
    if follow:
        from runspan.cli.follow import follow_traces  # noqa: PLC0415

        with errors_as_messages():
            follow_traces(database_url, chosen, seen=seen | {t.trace_id for t in found}, **where)


def _print_traces(found: list[Trace], chosen: str) -> None:
    if chosen != "table":
        print_records([trace.as_dict() for trace in found], chosen)
        return
    from runspan.cli.tables import traces_table  # noqa: PLC0415 - rich tables only when drawing

    console = _console()
    if not found:
        console.print("no traces match")
        return
    console.print(traces_table(found, width=_width(console), short=console.is_terminal))


@main.command()
@click.argument("run_or_trace_id")
@click.option("--full", is_flag=True, help="Every value whole, and errors' stack traces.")
@database_option
@json_option
def show(run_or_trace_id: str, full: bool, database_url: str | None, as_json: bool) -> None:
    """Draw the tree of a run (run id) or of a trace (trace id), with what each run said:
    inputs, outputs, conversations, tool calls and errors; a session id draws every turn of
    the conversation, in order."""
    with errors_as_messages(), RunStore(database_url) as store:
        jaeger = configured_jaeger_url()
        turns = store.session_trace_ids(run_or_trace_id)
        if turns:
            _show_session(store, run_or_trace_id, turns, jaeger, full=full, as_json=as_json)
            return
        _, anchor = store.locate(run_or_trace_id)
        roots = store.tree(run_or_trace_id)
    if as_json:
        link = jaeger_trace_url(roots[0].trace_id, jaeger) if jaeger else None
        print_json([{**root.as_dict(), "jaeger_url": link} for root in roots])
        return
    # A run's own tree is a subtree unless that run is where its trace begins.
    subtree = anchor is not None and roots[0].parent_span_id is not None
    print_trees(Console(), roots, jaeger, subtree=subtree, content=True, full=full)


def _show_session(
    store: RunStore,
    session: str,
    turns: list[str],
    jaeger: str | None,
    *,
    full: bool,
    as_json: bool,
) -> None:
    trees = [store.tree(trace_id) for trace_id in turns]
    if as_json:
        print_json(
            [
                {"turn": n, "trace_id": roots[0].trace_id, "runs": [r.as_dict() for r in roots]}
                for n, roots in enumerate(trees, 1)
            ]
        )
        return
    console = Console()
    console.print(f"session {session} · {len(turns)} turns", style="bold")
    for n, roots in enumerate(trees, 1):
        console.print(f"\nturn {n}", style="bold")
        print_trees(console, roots, jaeger, content=True, full=full)


@main.command()
@click.option("--user", help="Conversations of this user (user.id).")
@click.option("--since", help="Active after: an age (2h, 30d) or a date (2026-11-24).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@database_option
@json_option
@format_option
def sessions(
    *,
    user: str | None,
    since: str | None,
    limit: int,
    database_url: str | None,
    as_json: bool,
    output_format: str | None,
) -> None:
    """List conversations (session.id), most recently active first: user, turns, runs,
    errors, tokens, cost; `runspan show SESSION` draws every turn."""
    with errors_as_messages(), RunStore(database_url) as store:
        found = store.sessions(user=user, since=parse_moment(since) if since else None, limit=limit)
    chosen = chosen_format(output_format, as_json)
    if chosen != "table":
        print_records([session.as_dict() for session in found], chosen)
        return
    from runspan.cli.tables import sessions_table  # noqa: PLC0415 - rich tables only when drawing

    console = _console()
    if not found:
        console.print("no sessions (runs name one with a session_id, thread_id or conversation_id)")
        return
    console.print(sessions_table(found, width=_width(console)))


@main.command()
@click.option(
    "--by",
    type=click.Choice(["name", "model", "day", "node", "feedback"]),
    default="name",
    show_default=True,
    help="What to group runs by (feedback: the answers to --key).",
)
@click.option("--key", "feedback_key", help="With --by feedback: the feedback key, e.g. thumbs.")
@filter_options
@database_option
@json_option
@format_option
def stats(
    by: str,
    feedback_key: str | None,
    database_url: str | None,
    as_json: bool,
    output_format: str | None,
    **options: Any,
) -> None:
    """Latency percentiles, error rates, tokens and cost, grouped."""
    if by == "feedback" and not feedback_key:
        raise click.UsageError("--by feedback needs --key, the feedback key (such as thumbs)")
    with errors_as_messages(), RunStore(database_url) as store:
        where = run_filter(options)
        found = store.stats(by, where, feedback_key=feedback_key)  # type: ignore[arg-type]
    chosen = chosen_format(output_format, as_json)
    if chosen != "table":
        print_records([dict(vars(stat)) for stat in found], chosen)
        return
    from runspan.cli.tables import stats_table  # noqa: PLC0415

    console = _console()
    console.print(stats_table(found, by, width=_width(console)))


# A statement may open with a SQL comment ("-- ..."), which click would take for an option: words
# click does not know are handed to STATEMENT, and a lone unknown "--word" is still refused.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("statement")
@click.option("--wide", is_flag=True, help="In a terminal, every value whole (else long ones cut).")
@database_option
@json_option
@format_option
def sql(
    statement: str, wide: bool, database_url: str | None, as_json: bool, output_format: str | None
) -> None:
    """Run one read-only SQL statement (SQLite opened read-only; PostgreSQL in a read-only
    transaction, as a role that can only read)."""
    if re.fullmatch(r"--?[A-Za-z][\w-]*", statement):
        raise click.NoSuchOption(statement)
    with errors_as_messages(), RunStore(database_url) as store:
        result = store.sql(statement)
    chosen = chosen_format(output_format, as_json)
    if chosen != "table":
        print_records([dict(zip(result.columns, row, strict=True)) for row in result.rows], chosen)
        return
    from rich.table import Table  # noqa: PLC0415

    console = _console()
    # Piped, every value whole; in a terminal, long ones cut with a marker that says so.
    cut = console.is_terminal and not wide
    table = Table(*result.columns, header_style="bold")
    for row in result.rows:
        table.add_row(*(_sql_value(value, cut) for value in row))
    console.print(table)
    console.print(f"{len(result.rows)} rows", style="dim")


_SQL_VALUE_CHARS = 60


def _sql_value(value: object, cut: bool) -> str:
    text = "NULL" if value is None else str(value)
    if cut and len(text) > _SQL_VALUE_CHARS:
        return f"{text[:_SQL_VALUE_CHARS]}… [+{len(text) - _SQL_VALUE_CHARS:,} chars: --wide]"
    return text


@main.command(name="prune")
@click.option("--older-than", required=True, help="Delete traces started longer ago: 30d, 12h.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@database_option
@json_option
def prune_command(older_than: str, dry_run: bool, database_url: str | None, as_json: bool) -> None:
    """Delete traces (with their runs) older than an age; on SQLite, give the space back."""
    with errors_as_messages():
        seconds = parse_age(older_than)
        removed = prune(seconds, database_url, dry_run=dry_run)
    if as_json:
        print_json(dataclasses.asdict(removed))
        return
    verb = "would delete" if dry_run else "deleted"
    line = f"{verb} {removed.traces} traces ({removed.runs} runs) older than {older_than}"
    if removed.freed_bytes is not None:
        line += f"; the file shrank by {removed.freed_bytes / 1e6:.1f} MB"
    click.echo(line)


@main.group()
def db() -> None:
    """The database: its schema, and a role that can only read it."""


@db.command()
@database_option
def upgrade(database_url: str | None) -> None:
    """Create runspan's schema, or migrate it to this version."""
    with errors_as_messages():
        url = database_url_from(database_url)
        version = upgrade_database(url)
    click.echo(f"{safe_url(url)} is at schema {version}")


@db.command(name="create-reader")
@click.argument("role")
@database_option
@click.option(
    "--password",
    envvar="RUNSPAN_READER_PASSWORD",
    help="The role's password (else RUNSPAN_READER_PASSWORD; else none: the server's auth).",
)
@click.option("--execute", is_flag=True, help="Run the statements, instead of printing them.")
def create_reader_command(
    role: str, database_url: str | None, password: str | None, execute: bool
) -> None:
    """Make a PostgreSQL role that can only read runspan's tables, for `runspan sql`.

    Prints the SQL to run as an administrator, or runs it with --execute as the URL's role.
    Then set RUNSPAN_READ_DATABASE_URL to the role's URL: the read side uses it.
    """
    with errors_as_messages():
        statements, reader_url = create_reader(
            role, database_url, password=password, execute=execute
        )
    shown = safe_url(reader_url)
    if not execute:
        for statement in statements:
            click.echo(f"{statement};")
        click.echo(f"-- then: export RUNSPAN_READ_DATABASE_URL='{shown}'")
        return
    click.echo(f"made {role}, which can only read; export RUNSPAN_READ_DATABASE_URL='{shown}'")

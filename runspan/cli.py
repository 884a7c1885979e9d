"""The ``runspan`` command: the demo, and run history from the database.

Output is for people (tables and trees) unless ``--json`` asks for it for scripts. Every error a
user can cause (a bad id, filter, URL or statement) ends in one line saying what to do, and exit
status 1; a database password never appears in it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from runspan.exporters.jaeger import jaeger_base_url, jaeger_trace_url
from runspan.exporters.otlp import OtlpSpanExporter
from runspan.exporters.replay import replay, trace_pages, window_pages
from runspan.exporters.settings import OtlpSettings
from runspan.storage import (
    Run,
    RunFilter,
    RunStore,
    StorageError,
    prune,
    safe_url,
    upgrade_database,
)
from runspan.storage.durations import ns_ago, parse_age, parse_moment
from runspan.storage.engine import database_url_from, is_sqlite, sqlite_path

_F = TypeVar("_F", bound=Callable[..., Any])
# Jaeger links printed under a list of runs, one per trace.
_LINKS_SHOWN = 5


@click.group()
@click.version_option(package_name="runspan")
def main() -> None:
    """runspan: every LangChain run as an OpenTelemetry span, stored in SQL."""


def _database_option(command: _F) -> _F:
    return click.option(
        "--database-url",
        "database_url",
        default=None,
        metavar="URL",
        help="The database; else RUNSPAN_DATABASE_URL, else sqlite:///runspan.db.",
    )(command)


def _json_option(command: _F) -> _F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")(command)


@contextmanager
def _errors_as_messages() -> Iterator[None]:
    try:
        yield
    except (StorageError, ValueError) as error:
        raise click.ClickException(str(error)) from None


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _filter_options(command: _F) -> _F:
    options = [
        click.option("--name", help="Runs with this name."),
        click.option("--type", "run_type", help="chain, llm, tool, retriever, prompt, parser..."),
        click.option("--status", help="running, ok, error, unfinished, interrupted or retried."),
        click.option(
            "--reason",
            help="Unfinished runs that ended so: cancelled, abandoned, root_ended, expired.",
        ),
        click.option("--interrupted", is_flag=True, help="LangGraph runs paused by interrupt()."),
        click.option("--node", help="Runs of this LangGraph node, and what ran inside it."),
        click.option("--since", help="Started after: an age (2h, 30d) or a date (2026-11-24)."),
        click.option("--until", help="Started before: an age or a date."),
        click.option("--older-than", help="Started more than this long ago (5m, 2h, 30d)."),
        click.option("--min-duration", type=float, help="At least this many milliseconds."),
        click.option("--max-duration", type=float, help="At most this many milliseconds."),
        click.option("--model", help="Model runs of this model."),
        click.option("--tag", help="Runs carrying this tag."),
        click.option("--metadata", metavar="KEY=VALUE", help="Runs whose metadata has this."),
        click.option("--contains", metavar="TEXT", help="Inputs or outputs contain this text."),
        click.option("--roots", is_flag=True, help="Only runs that started a run tree."),
        click.option("--trace", "trace_id", help="Only runs of this trace."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run_filter(options: dict[str, Any]) -> RunFilter:
    metadata = None
    if options["metadata"] is not None:
        key, sep, value = options["metadata"].partition("=")
        if not sep:
            raise click.BadParameter("use KEY=VALUE", param_hint="--metadata")
        metadata = (key, value)
    until = parse_moment(options["until"]) if options["until"] else None
    if options["older_than"]:
        older = ns_ago(options["older_than"])
        until = older if until is None else min(until, older)
    status = options["status"]
    if options["interrupted"]:
        if status not in (None, "interrupted"):
            raise click.BadParameter(f"not with --status {status}", param_hint="--interrupted")
        status = "interrupted"
    if options["reason"] is not None and status is None:
        status = "unfinished"
    return RunFilter(
        name=options["name"],
        run_type=options["run_type"],
        status=status,
        unfinished_reason=options["reason"],
        node=options["node"],
        since=parse_moment(options["since"]) if options["since"] else None,
        until=until,
        min_duration_ms=options["min_duration"],
        max_duration_ms=options["max_duration"],
        model=options["model"],
        tag=options["tag"],
        metadata=metadata,
        text=options["contains"],
        roots_only=options["roots"],
        trace_id=options["trace_id"],
    )


@main.command()
@_filter_options
@click.option("--slowest", is_flag=True, help="Slowest first instead of newest first.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@_database_option
@_json_option
def runs(
    slowest: bool, limit: int, database_url: str | None, as_json: bool, **options: Any
) -> None:
    """List runs, newest first, filtered."""
    with _errors_as_messages(), RunStore(database_url) as store:
        jaeger = jaeger_base_url()
        found = store.runs(
            _run_filter(options), limit=limit, order="slowest" if slowest else "newest"
        )
    if as_json:
        _print_json(
            [
                {
                    **run.as_dict(children=False),
                    "jaeger_url": jaeger_trace_url(run.trace_id, jaeger),
                }
                for run in found
            ]
        )
        return
    from runspan.render import runs_table  # noqa: PLC0415 - rich tables only when drawing

    console = Console()
    if not found:
        console.print("no runs match")
        return
    console.print(runs_table(found))
    traces = list(dict.fromkeys(run.trace_id for run in found))
    for trace_id in traces[:_LINKS_SHOWN]:
        _print_link(console, "Jaeger", jaeger_trace_url(trace_id, jaeger))
    if len(traces) > _LINKS_SHOWN:
        console.print(f"and {len(traces) - _LINKS_SHOWN} more traces (--json gives every link)")


@main.command()
@click.argument("run_or_trace_id")
@_database_option
@_json_option
def show(run_or_trace_id: str, database_url: str | None, as_json: bool) -> None:
    """Draw the tree of a run (run id) or of a trace (trace id)."""
    with _errors_as_messages(), RunStore(database_url) as store:
        jaeger = jaeger_base_url()
        roots = store.tree(run_or_trace_id)
    if as_json:
        link = jaeger_trace_url(roots[0].trace_id, jaeger)
        _print_json([{**root.as_dict(), "jaeger_url": link} for root in roots])
        return
    _print_trees(Console(), roots, jaeger)


def _print_link(console: Console, label: str, url: str) -> None:
    console.print(f"{label}: [link={url}]{url}[/link]", highlight=False, soft_wrap=True)


def _print_trees(console: Console, roots: list[Run], jaeger: str | None) -> None:
    from runspan.render import run_tree_view  # noqa: PLC0415

    count = sum(1 for root in roots for _ in root.walk())
    trace = roots[0].trace_id
    console.print(run_tree_view(roots, f"trace {trace} · {count} runs"))
    if jaeger is not None:
        _print_link(console, "Jaeger", jaeger_trace_url(trace, jaeger))


@main.command()
@click.option(
    "--by",
    type=click.Choice(["name", "model", "day", "node"]),
    default="name",
    show_default=True,
    help="What to group runs by.",
)
@_filter_options
@_database_option
@_json_option
def stats(by: str, database_url: str | None, as_json: bool, **options: Any) -> None:
    """Latency percentiles, error rates, tokens and cost, grouped."""
    with _errors_as_messages(), RunStore(database_url) as store:
        found = store.stats(by, _run_filter(options))  # type: ignore[arg-type]
    if as_json:
        _print_json([vars(stat) for stat in found])
        return
    from runspan.render import stats_table  # noqa: PLC0415

    Console().print(stats_table(found, by))


@main.command()
@click.argument("statement")
@_database_option
@_json_option
def sql(statement: str, database_url: str | None, as_json: bool) -> None:
    """Run one read-only SQL statement (SQLite opened read-only, PostgreSQL in a read-only
    transaction)."""
    with _errors_as_messages(), RunStore(database_url) as store:
        result = store.sql(statement)
    if as_json:
        _print_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table(*result.columns, header_style="bold")
    for row in result.rows:
        table.add_row(*("NULL" if value is None else str(value) for value in row))
    console = Console()
    console.print(table)
    console.print(f"{len(result.rows)} rows", style="dim")


@main.command(name="prune")
@click.option("--older-than", required=True, help="Delete traces started longer ago: 30d, 12h.")
@_database_option
@_json_option
def prune_command(older_than: str, database_url: str | None, as_json: bool) -> None:
    """Delete traces (with their runs) older than an age."""
    with _errors_as_messages():
        seconds = parse_age(older_than)
        removed = prune(seconds, database_url)
    if as_json:
        _print_json({"traces": removed.traces, "runs": removed.runs})
        return
    click.echo(f"deleted {removed.traces} traces ({removed.runs} runs) older than {older_than}")


@main.group()
def db() -> None:
    """The database schema."""


@db.command()
@_database_option
def upgrade(database_url: str | None) -> None:
    """Create runspan's schema, or migrate it to this version."""
    with _errors_as_messages():
        url = database_url_from(database_url)
        version = upgrade_database(url)
    click.echo(f"{safe_url(url)} is at schema {version}")


# --- replay over OTLP ------------------------------------------------------------------------


@main.command(name="export")
@click.option(
    "--endpoint",
    metavar="URL",
    help="The OTLP receiver (Jaeger: http://localhost:4317); else OTEL_EXPORTER_OTLP_ENDPOINT.",
)
@click.option(
    "--protocol",
    type=click.Choice(["grpc", "http/protobuf"]),
    help="Else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf on port 4318 and grpc otherwise.",
)
@click.option("--header", "headers", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--since", help="Runs that ended after: an age (2h, 30d) or a date and time.")
@click.option("--until", help="With --since: runs that ended up to then (default: now).")
@click.option("--trace", "trace_id", metavar="ID", help="One whole trace.")
@click.option("--run", "run_id", metavar="ID", help="The whole trace of this run.")
@_database_option
@_json_option
def export_command(
    *,
    endpoint: str | None,
    protocol: str | None,
    headers: tuple[str, ...],
    since: str | None,
    until: str | None,
    trace_id: str | None,
    run_id: str | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Send stored runs to an OTLP endpoint, with their original ids and times.

    --since/--until send each run that ended in that window (what an outage of the receiver
    missed); --trace and --run send a whole trace.
    """
    from rich.progress import Progress  # noqa: PLC0415 - only for this command

    if sum(value is not None for value in (since, trace_id, run_id)) != 1:
        raise click.UsageError("give one of --since, --trace or --run")
    if until is not None and since is None:
        raise click.UsageError("--until goes with --since")
    with _errors_as_messages():
        settings = OtlpSettings.build(
            endpoint, protocol=protocol, headers=",".join(headers) if headers else None
        )
        if settings is None:
            raise click.UsageError("give --endpoint, or set OTEL_EXPORTER_OTLP_ENDPOINT")
        with RunStore(database_url) as store:
            pages: Iterable[list[Run]]
            if since is not None:
                start = parse_moment(since)
                end = parse_moment(until) if until is not None else None
                total = store.count_ended(start, end)
                pages = window_pages(store, start, end)
            else:
                trace = store.locate(trace_id or run_id or "")[0]
                pages = list(trace_pages(store, [trace]))
                total = sum(len(page) for page in pages)
            exporter = OtlpSpanExporter(settings)
            try:
                with Progress(console=Console(stderr=True), transient=True) as progress:
                    task = progress.add_task("sending", total=total)
                    result = replay(
                        pages, exporter, progress=lambda done: progress.advance(task, done)
                    )
            finally:
                exporter.shutdown()
    where = settings.display_endpoint
    if as_json:
        _print_json({**dataclasses.asdict(result), "endpoint": where})
    else:
        click.echo(f"sent {result.spans} spans of {result.traces} traces to {where}")
        if result.running:
            click.echo(f"{result.running} runs still running were not sent (no end yet)")
    if result.failed:
        raise click.ClickException(
            f"{where} did not take {result.failed} spans; nothing more was sent. Is it up?"
        )


# --- the demo ------------------------------------------------------------------------------


def _queries_to_paste(trace_id: str) -> list[tuple[str, str]]:
    return [
        (
            "This trace, run by run:",
            "SELECT name, run_type, status, round(CAST(duration_ms AS NUMERIC), 2) AS ms,"
            f" model_name, total_tokens FROM runs_v WHERE trace_id = '{trace_id}'"
            " ORDER BY start_ns;",
        ),
        (
            "The slowest runs:",
            "SELECT start_time, name, run_type, round(CAST(duration_ms AS NUMERIC), 2) AS ms"
            " FROM runs_v ORDER BY duration_ms DESC LIMIT 10;",
        ),
        (
            "Tokens per model per day:",
            "SELECT model_name, date(start_time) AS day, count(*) AS calls,"
            " sum(input_tokens) AS input, sum(output_tokens) AS output"
            " FROM llm_calls GROUP BY 1, 2 ORDER BY 2 DESC;",
        ),
    ]


@main.command()
@_database_option
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Also send the spans over OTLP (Jaeger: http://localhost:4317); else"
    " OTEL_EXPORTER_OTLP_ENDPOINT.",
)
@_json_option
def demo(database_url: str | None, otlp_endpoint: str | None, as_json: bool) -> None:
    """Run a real LangChain chain offline, store its runs, and show them read back from SQL."""
    from runspan.demo import QUESTION, run_demo  # noqa: PLC0415 - needs LangChain
    from runspan.provider import build_provider  # noqa: PLC0415
    from runspan.tracer import TracingCallbackHandler  # noqa: PLC0415

    with _errors_as_messages():
        url = database_url_from(database_url)
        otlp = OtlpSettings.build(otlp_endpoint)
        jaeger = jaeger_base_url() if otlp is not None else None
        started = time.time_ns()
        # The provider runspan.configure() builds, without touching the process's global
        # OpenTelemetry state.
        exporter = OtlpSpanExporter(otlp) if otlp is not None else None
        provider = build_provider(
            "runspan-demo", database_url=url, otlp=otlp, otlp_exporter=exporter
        )
        try:
            answer, streamed = run_demo(TracingCallbackHandler(tracer_provider=provider))
            if not provider.force_flush():
                raise click.ClickException(f"could not write the runs to {safe_url(url)}")
        finally:
            provider.shutdown()
        with RunStore(url) as store:
            found = store.runs(
                RunFilter(roots_only=True, name="travel_assistant", since=started), limit=10
            )
            trees = [store.tree(run.run_id or run.trace_id) for run in reversed(found)]
    exported = exporter is not None and exporter.not_sent == 0
    if as_json:
        _print_json(
            [
                {**root.as_dict(), "jaeger_url": jaeger_trace_url(root.trace_id, jaeger)}
                if jaeger is not None and exported
                else root.as_dict()
                for roots in trees
                for root in roots
            ]
        )
        return
    console = Console()
    console.print(f"[bold]Question:[/bold] {QUESTION}")
    console.print(f"[bold]Answer:[/bold]   {answer}")
    console.print(f"[bold]Streamed:[/bold] {streamed}\n")
    where = safe_url(url)
    if exporter is not None and otlp is not None:
        if exported:
            where += f" and sent to {otlp.display_endpoint} over OTLP"
        else:
            console.print(
                f"[yellow]Could not send the spans to {otlp.display_endpoint};[/yellow] they"
                f" are stored: `runspan export --endpoint {otlp.display_endpoint} --since 1h`"
                " sends them when it is up.\n"
            )
    console.print(f"Stored in {where}, read back from SQL:\n")
    for roots in trees:
        _print_trees(console, roots, jaeger if exported else None)
        console.print()
    client = "psql" if not is_sqlite(url) else f"sqlite3 {sqlite_path(url) or Path('runspan.db')}"
    console.print(f'[bold]Ask your run history in SQL[/bold] ({client}, or runspan sql "..."):')
    for title, query in _queries_to_paste(trees[0][0].trace_id if trees else ""):
        console.print(f"\n[dim]-- {title}[/dim]")
        console.print(query, highlight=False, soft_wrap=True)

"""``runspan demo``: a real LangChain chain, offline, stored and drawn back from SQL."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console

from runspan.cli.app import (
    database_option,
    errors_as_messages,
    json_option,
    main,
    print_json,
    print_trees,
)
from runspan.exporters import jaeger_base_url, jaeger_trace_url
from runspan.storage import RunFilter, RunStore, database_url_from, is_sqlite, safe_url, sqlite_path


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
@database_option
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Also send the spans over OTLP (Jaeger: http://localhost:4317); else"
    " OTEL_EXPORTER_OTLP_ENDPOINT.",
)
@json_option
def demo(database_url: str | None, otlp_endpoint: str | None, as_json: bool) -> None:
    """Run a real LangChain chain offline, store its runs, and show them read back from SQL."""
    from runspan.cli.demo_chain import QUESTION, run_demo  # noqa: PLC0415 - needs LangChain
    from runspan.exporters import OtlpSettings, OtlpSpanExporter  # noqa: PLC0415 - gRPC
    from runspan.provider import build_provider  # noqa: PLC0415
    from runspan.tracer import TracingCallbackHandler  # noqa: PLC0415

    with errors_as_messages():
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
        print_json(
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
        print_trees(console, roots, jaeger if exported else None)
        console.print()
    client = "psql" if not is_sqlite(url) else f"sqlite3 {sqlite_path(url) or Path('runspan.db')}"
    console.print(f'[bold]Ask your run history in SQL[/bold] ({client}, or runspan sql "..."):')
    for title, query in _queries_to_paste(trees[0][0].trace_id if trees else ""):
        console.print(f"\n[dim]-- {title}[/dim]")
        console.print(query, highlight=False, soft_wrap=True)

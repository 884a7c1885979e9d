"""``runspan export``: stored runs sent to an OTLP endpoint, with their original ids and times."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import click
from rich.console import Console

from runspan.cli.app import database_option, errors_as_messages, json_option, main, print_json
from runspan.cli.arguments import parse_moment
from runspan.storage import Run, RunStore


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
@database_option
@json_option
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

    # gRPC and the OTLP exporters load only for the command that sends.
    from runspan.exporters import (  # noqa: PLC0415
        OtlpSettings,
        OtlpSpanExporter,
        replay_runs,
        trace_pages,
        window_pages,
    )

    if sum(value is not None for value in (since, trace_id, run_id)) != 1:
        raise click.UsageError("give one of --since, --trace or --run")
    if until is not None and since is None:
        raise click.UsageError("--until goes with --since")
    with errors_as_messages():
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
            # One try, reported once below: not a running app's outage lines and retries.
            exporter = OtlpSpanExporter(settings, log_outages=False, max_batch_spans=None)
            try:
                with Progress(console=Console(stderr=True), transient=True) as progress:
                    task = progress.add_task("sending", total=total)
                    result = replay_runs(
                        pages, exporter, progress=lambda done: progress.advance(task, done)
                    )
            finally:
                exporter.shutdown()
    where = settings.display_endpoint
    if as_json:
        print_json({**dataclasses.asdict(result), "endpoint": where})
    elif not result.failed:
        click.echo(f"sent {result.spans} spans of {result.traces} traces to {where}")
    if result.running and not as_json:
        click.echo(f"{result.running} runs still running were not sent (no end yet)")
    if result.failed:
        cause = exporter.last_failure or "it did not accept them"
        raise click.ClickException(
            f"could not send to {where}: {cause}. Sent {result.spans} spans before it failed,"
            f" {result.failed} not; nothing more was tried. Is the receiver up?"
        )

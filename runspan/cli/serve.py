"""``runspan serve``: the database as a tracing backend (see :mod:`runspan.serve`)."""

from __future__ import annotations

import click

from runspan.cli.app import database_option, errors_as_messages, main


@main.command(name="serve")
@database_option
@click.option(
    "--read-database-url",
    envvar="RUNSPAN_READ_DATABASE_URL",
    metavar="URL",
    help="What Jaeger's reads connect as (a role that can only read); else the database.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; anything but loopback needs --token (or --insecure-bind).",
)
@click.option("--grpc-port", default=4317, show_default=True, help="OTLP/gRPC. 0: any free port.")
@click.option("--http-port", default=4318, show_default=True, help="OTLP/HTTP. 0: any free port.")
@click.option(
    "--token",
    envvar="RUNSPAN_SERVE_TOKEN",
    help="Require 'authorization: Bearer TOKEN' on every call; else RUNSPAN_SERVE_TOKEN.",
)
@click.option(
    "--insecure-bind",
    is_flag=True,
    help="Listen beyond loopback with no token (only on a network that is yours alone).",
)
@click.option(
    "--value-chars",
    default=65536,
    show_default=True,
    type=click.IntRange(min=64),
    help="On the read APIs, each value whole up to this many characters, then cut and marked.",
)
@click.option(
    "--max-waiting",
    default=8,
    show_default=True,
    type=click.IntRange(min=0),
    help="Requests that may wait for the database writer; beyond them, a retryable 'busy'.",
)
def serve_command(
    *,
    database_url: str | None,
    read_database_url: str | None,
    host: str,
    grpc_port: int,
    http_port: int,
    token: str | None,
    insecure_bind: bool,
    max_waiting: int,
    value_chars: int,
) -> None:
    """Store OTLP traces sent by any process (gRPC and HTTP) into the database, and answer
    Jaeger's remote-storage API from it (gRPC), until SIGTERM or Ctrl-C; every span
    acknowledged is written."""
    from runspan.serve import Listening, ServeSettings, serve  # noqa: PLC0415 - gRPC, uvicorn

    def announce(listening: Listening) -> None:
        click.echo(
            f"runspan serve: OTLP gRPC on {listening.host}:{listening.grpc_port}"
            " (and Jaeger's jaeger.storage.v2 API),"
            f" OTLP/HTTP on http://{listening.host}:{listening.http_port}/v1/traces"
            " (and Jaeger's query API under /api),"
            f" storing into {listening.database}",
            err=True,
        )

    settings = ServeSettings(
        database_url=database_url,
        read_database_url=read_database_url or None,
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        token=token or None,
        insecure_bind=insecure_bind,
        max_waiting=max_waiting,
        value_chars=value_chars,
    )
    with errors_as_messages():
        try:
            serve(settings, ready=announce)
        except OSError as error:
            raise click.ClickException(str(error)) from None

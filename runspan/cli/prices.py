"""``runspan prices``: the model prices cost is computed with."""

from __future__ import annotations

import click

from runspan.cli.app import (
    chosen_format,
    database_option,
    errors_as_messages,
    format_option,
    json_option,
    main,
    print_records,
)
from runspan.storage import RunStore


@main.group(name="prices")
def prices_group() -> None:
    """List model prices, or import the maintained table (genai-prices)."""


@prices_group.command(name="update")
@database_option
def prices_update(database_url: str | None) -> None:
    """Replace the imported prices with genai-prices' table (offline; needs
    pip install 'runspan[prices]'). Prices you added win over imported ones."""
    from runspan.storage.engine import create_writer_engine, database_url_from  # noqa: PLC0415
    from runspan.storage.migrate import upgrade  # noqa: PLC0415
    from runspan.storage.prices import import_prices  # noqa: PLC0415

    with errors_as_messages():
        engine = create_writer_engine(database_url_from(database_url))
        try:
            upgrade(engine)
            done = import_prices(engine)
        finally:
            engine.dispose()
    click.echo(
        f"imported {done.prices:,} prices of {done.models:,} models from genai-prices"
        f" {done.version}; {done.skipped:,} models left out (regex or tiered prices)"
    )


@prices_group.command(name="list")
@click.option("--model", help="The prices that match this model name, the one used first.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@database_option
@json_option
@format_option
def prices_list(
    model: str | None,
    limit: int,
    database_url: str | None,
    as_json: bool,
    output_format: str | None,
) -> None:
    """Model prices in US dollars per million tokens, with where each came from."""
    with errors_as_messages(), RunStore(database_url) as store:
        found = store.prices(model, limit=limit)
    chosen = chosen_format(output_format, as_json)
    if chosen != "table":
        print_records(found, chosen)
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    if not found:
        click.echo("no prices match" if model else "no prices: runspan prices update imports them")
        return
    table = Table("pattern", "provider", "input", "output", "cache read", "origin")
    for row in found:
        table.add_row(
            row["model_pattern"],
            row["provider"] or "",
            f"{row['input_usd_per_mtok']:g}",
            f"{row['output_usd_per_mtok']:g}",
            "" if row["cache_read_usd_per_mtok"] is None else f"{row['cache_read_usd_per_mtok']:g}",
            row["origin"] or "yours",
        )
    Console().print(table)

"""The ``runspan`` command group, and what its commands share: options, errors, output.

Output is for people (tables and trees) unless ``--json`` asks for it for scripts. Every error a
user can cause (a bad id, filter, URL or statement) ends in one line saying what to do, and exit
status 1; a database password never appears in it.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console

from runspan.exporters import jaeger_trace_url
from runspan.storage import Run, StorageError

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
@click.version_option(package_name="runspan")
def main() -> None:
    """runspan: every LangChain run as an OpenTelemetry span, stored in SQL."""


def database_option(command: F) -> F:
    return click.option(
        "--database-url",
        "database_url",
        default=None,
        metavar="URL",
        help="The database; else RUNSPAN_DATABASE_URL, else sqlite:///runspan.db.",
    )(command)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")(command)


@contextmanager
def errors_as_messages() -> Iterator[None]:
    try:
        yield
    except (StorageError, ValueError) as error:
        raise click.ClickException(str(error)) from None


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


FORMATS = ("table", "json", "jsonl", "csv", "tsv")


def format_option(command: F) -> F:
    """``--format`` for a listing (``--json`` stays, as ``--format json``)."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default=None,
        help="table (default), json, jsonl (one object a line), csv or tsv.",
    )(command)


def chosen_format(output_format: str | None, as_json: bool) -> str:
    if as_json and output_format not in (None, "json"):
        raise click.UsageError(f"--json and --format {output_format}: give one")
    return "json" if as_json else output_format or "table"


def print_records(records: list[dict[str, Any]], output_format: str) -> None:
    """Records for scripts: a JSON array, JSON lines, or CSV/TSV with nested values as JSON."""
    if output_format == "json":
        print_json(records)
        return
    if output_format == "jsonl":
        for record in records:
            sys.stdout.write(json.dumps(record, default=str) + "\n")
        return
    columns = list(records[0]) if records else []
    writer = csv.writer(sys.stdout, delimiter="\t" if output_format == "tsv" else ",")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_cell(record.get(column)) for column in columns])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def print_link(console: Console, label: str, url: str) -> None:
    console.print(f"{label}: [link={url}]{url}[/link]", highlight=False, soft_wrap=True)


def print_trees(
    console: Console,
    roots: list[Run],
    jaeger: str | None,
    *,
    subtree: bool = False,
    content: bool = False,
    full: bool = False,
) -> None:
    """Draw ``roots``; ``subtree``: they are one run's subtree, not a whole trace."""
    from runspan.cli.render import run_tree_view  # noqa: PLC0415

    count = sum(1 for root in roots for _ in root.walk())
    trace = roots[0].trace_id
    what = f"subtree of {roots[0].name} in trace {trace}" if subtree else f"trace {trace}"
    view = run_tree_view(roots, f"{what} · {count} runs", content=content, full=full)
    console.print(view)
    if jaeger is not None:
        print_link(console, "Jaeger", jaeger_trace_url(trace, jaeger))

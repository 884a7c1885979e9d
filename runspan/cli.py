"""The ``runspan`` command."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from runspan.testing import SpanNode


@click.group()
@click.version_option(package_name="runspan")
def main() -> None:
    """runspan: every LangChain run as an OpenTelemetry span."""


def _as_json(node: SpanNode) -> dict[str, Any]:
    span = node.span
    return {
        "name": span.name,
        "trace_id": f"{span.context.trace_id:032x}" if span.context else None,
        "span_id": f"{span.context.span_id:016x}" if span.context else None,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": dict(span.attributes or {}),
        "events": [e.name for e in span.events],
        "children": [_as_json(child) for child in node.children],
    }


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the spans as JSON, for scripts.")
def demo(as_json: bool) -> None:
    """Run a real LangChain chain offline and show the spans runspan recorded."""
    from runspan.demo import QUESTION, run_demo  # noqa: PLC0415 - imports LangChain pieces
    from runspan.render import span_tree_view  # noqa: PLC0415
    from runspan.testing import capture_spans  # noqa: PLC0415

    with capture_spans(service_name="runspan-demo") as capture:
        answer, streamed = run_demo(capture)
        roots = capture.tree()
    if as_json:
        json.dump([_as_json(root) for root in roots], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    console = Console()
    console.print(f"[bold]Question:[/bold] {QUESTION}")
    console.print(f"[bold]Answer:[/bold]   {answer}")
    console.print(f"[bold]Streamed:[/bold] {streamed}\n")
    count = sum(1 for root in roots for _ in root.walk())
    console.print(span_tree_view(roots, f"{count} spans in {len(roots)} traces (invoke, stream)"))

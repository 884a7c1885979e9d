"""``runs --follow``: runs printed as they are stored, until Ctrl-C.

Rows are followed by their place in ``runs`` (its ``id``), so a run stored late is still printed
once, when it is stored; a run stored while it was running is printed then, as running.
"""

from __future__ import annotations

import sys
import time

import click

from runspan.cli.app import print_records
from runspan.storage import Run, RunFilter, RunStore

POLL_SECONDS = 1.0


def _line(run: Run) -> str:
    duration = f"{run.duration_ms:.2f} ms" if run.duration_ms is not None else "running"
    model = f"  {run.model_name}" if run.model_name else ""
    return f"{run.run_id or run.span_id}  {run.name}  {run.status}  {duration}{model}"


def follow_runs(
    database_url: str | None, where: RunFilter, output_format: str, *, after: int
) -> None:
    """Print each run matching ``where`` stored after the row ``after``, one a line (JSON lines
    for ``json``), as it is stored, until interrupted."""
    line_format = "jsonl" if output_format == "json" else output_format
    try:
        with RunStore(database_url) as store:
            last = after
            while True:
                time.sleep(POLL_SECONDS)
                found, last = store.new_runs(where, last)
                if not found:
                    continue
                if line_format == "table":
                    for run in found:
                        click.echo(_line(run))
                else:
                    print_records([run.as_dict(children=False) for run in found], line_format)
                sys.stdout.flush()  # a pipe is block-buffered: a follower reads line by line
    except KeyboardInterrupt:
        return

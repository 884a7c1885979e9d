"""``runs --follow`` and ``traces --follow``: rows printed as they are stored, until Ctrl-C.

Runs are followed by their place in ``runs`` (its ``id``), so a run stored late is still printed
once, when it is stored; a run stored while it was running is printed then, as running. Traces
are printed once, when their first run is stored, from the newest traces read each second.
"""

from __future__ import annotations

import sys
import time

import click

from runspan.cli.app import print_records
from runspan.storage import Run, RunFilter, RunStore, Trace

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


def _trace_line(trace: Trace) -> str:
    return f"{trace.trace_id}  {trace.name or ''}  {trace.status}  {trace.run_count} runs"


def follow_traces(
    database_url: str | None, output_format: str, *, seen: set[str], **where: object
) -> None:
    """Print each trace not in ``seen`` as it appears, one a line, until interrupted."""
    line_format = "jsonl" if output_format == "json" else output_format
    try:
        with RunStore(database_url) as store:
            while True:
                time.sleep(POLL_SECONDS)
                newest = store.traces(limit=100, **where)  # type: ignore[arg-type]
                fresh = [trace for trace in reversed(newest) if trace.trace_id not in seen]
                if not fresh:
                    continue
                seen.update(trace.trace_id for trace in fresh)
                if len(seen) > 10_000:  # bounded: what is this old cannot be new again
                    seen.clear()
                    seen.update(trace.trace_id for trace in newest)
                if line_format == "table":
                    for trace in fresh:
                        click.echo(_trace_line(trace))
                else:
                    print_records([trace.as_dict() for trace in fresh], line_format)
                sys.stdout.flush()
    except KeyboardInterrupt:
        return

"""``runspan feedback RUN KEY [SCORE]``: feedback on a run, from the terminal."""

from __future__ import annotations

import uuid

import click

from runspan.cli.app import database_option, errors_as_messages, main
from runspan.storage import NotFoundError, RunStore
from runspan.storage.feedback import feedback_row


def _run_id(store: RunStore, given: str) -> str:
    """A full run id, from itself or from any unique prefix of a run or span id."""
    try:
        return str(uuid.UUID(given))
    except ValueError:
        pass
    trace_id, span_id = store.locate(given)
    for run in store.runs_of_traces([trace_id]):
        # A trace id (a root run's id without dashes) names its root run.
        named = run.span_id == span_id if span_id else run.parent_span_id is None
        if named and run.run_id:
            return run.run_id
    raise NotFoundError(f"{given!r} names a trace or a span of no LangChain run: give a run id")


@main.command(name="feedback")
@click.argument("run")
@click.argument("key")
@click.argument("score", required=False, type=float)
@click.option("--value", help="A label instead of (or beside) the score: good, wrong, ...")
@click.option("--comment", help="Why.")
@database_option
def feedback_command(
    *,
    run: str,
    key: str,
    score: float | None,
    value: str | None,
    comment: str | None,
    database_url: str | None,
) -> None:
    """Store feedback on a run: a SCORE under KEY (runspan feedback 3f2a thumbs 1), or a
    --value; RUN is a run id or any unique prefix of one."""
    with errors_as_messages():
        with RunStore(database_url) as store:
            run_id = _run_id(store, run)
        row = feedback_row(run_id, key, score=score, value=value, comment=comment, source="cli")
        from runspan.storage import SqlSpanExporter  # noqa: PLC0415 - the SDK: only to write

        writer = SqlSpanExporter(database_url)
        try:
            if not writer.write_feedback([row]):
                raise click.ClickException("the database is unreachable: nothing stored")
        finally:
            writer.shutdown()
    shown = " ".join(part for part in (f"{score:g}" if score is not None else None, value) if part)
    click.echo(f"stored {key} = {shown} on run {run_id}")

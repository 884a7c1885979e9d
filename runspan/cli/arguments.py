"""What people type: ages and times (``30d``, ``2h``, an ISO date), and the run filters that
``runs`` and ``stats`` share."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import click

from runspan.cli.app import F
from runspan.storage import RunFilter

# The clock ages are counted from; one name, so a test can move "now".
_now_ns = time.time_ns

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_age(text: str) -> float:
    """Seconds in an age such as ``30d``, ``2h``, ``15m``, ``90s`` or ``1w``.

    Raises:
        ValueError: anything else, with the accepted forms in the message.
    """
    match = _AGE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an age: use a number and a unit, like 90s, 15m, 2h, 30d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def ns_ago(text: str, now_ns: int | None = None) -> int:
    """The time ``text`` ago, in nanoseconds since the epoch."""
    now = _now_ns() if now_ns is None else now_ns
    return now - int(parse_age(text) * 1e9)


def parse_moment(text: str, now_ns: int | None = None) -> int:
    """A moment in nanoseconds: an age ago (``2h``) or an ISO date/time (UTC unless it says).

    Raises:
        ValueError: neither form.
    """
    if _AGE.match(text):
        return ns_ago(text, now_ns)
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age (2h, 30d) nor a date and time (2026-11-24T13:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def filter_options(command: F) -> F:
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
        click.option("--tag", multiple=True, help="Runs carrying this tag (repeat: all of them)."),
        click.option(
            "--metadata",
            multiple=True,
            metavar="KEY=VALUE",
            help="Runs whose metadata has this (repeat: all of them).",
        ),
        click.option("--contains", metavar="TEXT", help="Inputs or outputs contain this text."),
        click.option("--roots", is_flag=True, help="Only runs that started a run tree."),
        click.option(
            "--all",
            "all_types",
            is_flag=True,
            help="runs: prompts and parsers too (else left out).",
        ),
        click.option("--trace", "trace_id", help="Only runs of this trace."),
        click.option("--session", help="Only runs of this conversation (session.id)."),
        click.option("--user", help="Only runs of this user (user.id)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_filter(options: dict[str, Any], *, skip: tuple[str, ...] = ()) -> RunFilter:
    """The filter the options ask for; ``skip``: run types left out unless --all or --type."""
    metadata = []
    for pair in options["metadata"]:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter("use KEY=VALUE", param_hint="--metadata")
        metadata.append((key, value))
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
        tag=tuple(options["tag"]) or None,
        metadata=tuple(metadata) or None,
        text=options["contains"],
        roots_only=options["roots"],
        skip_types=() if options["all_types"] or options["run_type"] else skip,
        trace_id=options["trace_id"],
        session=options["session"],
        user=options["user"],
    )

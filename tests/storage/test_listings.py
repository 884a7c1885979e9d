"""The listings (runs, traces, stats, sql) as users read and script them, through the real
command on SQLite and PostgreSQL: ids as unique prefixes, tables that fit the terminal, the
runs listed by default, and every output format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from langchain_core.runnables import RunnableLambda

from runspan.cli.render import short_ids
from tests.storage.conftest import Stored
from tests.support import runspan_cli

_RUNSPAN = Path(sys.executable).parent / "runspan"


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return runspan_cli(url, *args)


def test_prefixes_find_runs_and_traces(stored: Stored) -> None:
    """The short ids `runs` shows name their runs in `show`; a trace's prefix names the
    trace; a prefix of several ids, or of none, is one clear line."""
    chain = RunnableLambda(lambda x: x, name="first") | RunnableLambda(lambda x: x, name="second")
    for value in range(3):
        chain.invoke(value, config={"callbacks": [stored.handler]})
    stored.flush()
    listed = json.loads(_cli(stored.read_url, "runs", "--json").stdout)
    assert len(listed) == 9
    prefixes = short_ids([str(run["run_id"]) for run in listed])
    assert all(len(prefix) >= 8 for prefix in prefixes.values())
    assert len(set(prefixes.values())) == 9
    for run in listed:
        if run["name"] == "second":
            shown = _cli(stored.read_url, "show", prefixes[str(run["run_id"])])
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.startswith(f"subtree of second in trace {run['trace_id']}")
    trace = str(listed[0]["trace_id"])
    whole = _cli(stored.read_url, "show", trace[:24])
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.startswith(f"trace {trace}")
    ambiguous = _cli(stored.read_url, "show", trace[:4])
    assert ambiguous.returncode == 1
    assert "starts more than one id" in ambiguous.stderr
    missing = _cli(stored.read_url, "show", "ffff0000")
    assert missing.returncode == 1
    assert "no run or trace starts with 'ffff0000'" in missing.stderr


def test_piped_output_keeps_whole_ids(stored: Stored) -> None:
    """Output that is not a terminal (a pipe, a file) has every id whole."""
    RunnableLambda(lambda x: x, name="only").invoke(1, config={"callbacks": [stored.handler]})
    stored.flush()
    [run] = json.loads(_cli(stored.read_url, "runs", "--json").stdout)
    table = _cli(stored.read_url, "runs")
    assert str(run["run_id"]) in table.stdout


def test_tables_fit_80_columns_in_a_terminal(stored: Stored) -> None:
    """In an 80-column terminal, runs, traces and stats fit by dropping their least useful
    columns; the ids they keep are whole prefixes that `show` takes, never cut mid-way."""
    import re

    chain = RunnableLambda(lambda x: x, name="a_rather_long_step_name") | RunnableLambda(
        lambda x: x, name="second"
    )
    for value in range(3):
        chain.invoke(value, config={"callbacks": [stored.handler]})
    stored.flush()
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    terminal = {**os.environ, "COLUMNS": "80", "FORCE_COLOR": "1"}
    for command in (["runs"], ["traces"], ["stats"]):
        done = subprocess.run(
            [str(_RUNSPAN), *command, "--database-url", stored.read_url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=terminal,
        )
        assert done.returncode == 0, done.stderr
        lines = [ansi.sub("", line) for line in done.stdout.splitlines()]
        assert all(len(line) <= 80 for line in lines), "\n".join(lines)
        if command == ["runs"]:
            ids = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
            assert len(ids) == 9
            for prefix in ids:
                assert len(prefix) >= 8
                assert _cli(stored.read_url, "show", prefix).returncode == 0


def test_runs_leaves_prompts_and_parsers_out_unless_asked(stored: Stored) -> None:
    """`runs` lists models, tools, retrievers and chains; --all adds prompts and parsers, and
    --type prompt asks for prompts alone. `stats` counts every run."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from tests.support import fake_chat

    chain = ChatPromptTemplate.from_template("hi {x}") | fake_chat() | StrOutputParser()
    chain.invoke({"x": "1"}, config={"callbacks": [stored.handler]})
    stored.flush()

    def types(*args: str) -> list[str]:
        done = _cli(stored.read_url, "runs", "--json", *args)
        assert done.returncode == 0, done.stderr
        return sorted(str(run["run_type"]) for run in json.loads(done.stdout))

    assert types() == ["chain", "llm"]
    assert types("--all") == ["chain", "llm", "parser", "prompt"]
    assert types("--type", "prompt") == ["prompt"]
    stats = json.loads(_cli(stored.read_url, "stats", "--json").stdout)
    assert sum(int(stat["runs"]) for stat in stats) == 4


def test_every_listing_speaks_every_format(stored: Stored) -> None:
    """--format json, jsonl, csv and tsv carry the same records as --json, for runs, traces,
    stats and sql; --json with another --format is refused."""
    import csv
    import io

    chain = RunnableLambda(lambda x: {"said": x}, name="speak")
    for value in ("a, b", 'quote "q"', "tab\there"):
        chain.invoke(value, config={"callbacks": [stored.handler]})
    stored.flush()
    for command in (["runs"], ["traces"], ["stats"], ["sql", "SELECT name, inputs FROM runs"]):
        as_json = json.loads(_cli(stored.read_url, *command, "--json").stdout)
        assert as_json
        lines = _cli(stored.read_url, *command, "--format", "jsonl").stdout.splitlines()
        assert [json.loads(line) for line in lines] == as_json
        for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
            text = _cli(stored.read_url, *command, "--format", fmt).stdout
            rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
            assert len(rows) == len(as_json)
            assert list(rows[0]) == list(as_json[0])
    refused = _cli(stored.read_url, "runs", "--json", "--format", "csv")
    assert refused.returncode == 2
    assert "give one" in refused.stderr


def test_follow_prints_runs_as_they_are_stored(stored: Stored) -> None:
    """`runs --follow` prints each new run once as it is stored (JSON lines here), and ends
    cleanly on Ctrl-C."""
    import queue
    import signal
    import threading
    import time

    RunnableLambda(lambda x: x, name="before").invoke(1, config={"callbacks": [stored.handler]})
    stored.flush()
    follower = subprocess.Popen(
        [str(_RUNSPAN), "runs", "--follow", "--format", "jsonl", "--database-url", stored.read_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout])  # type: ignore[union-attr]
    reader.start()
    try:
        first = json.loads(lines.get(timeout=30))  # the listing: the run stored before
        assert first["name"] == "before"
        chain = RunnableLambda(lambda x: x, name="new_a") | RunnableLambda(
            lambda x: x, name="new_b"
        )
        chain.invoke(2, config={"callbacks": [stored.handler]})
        stored.flush()
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while len(seen) < 3 and time.monotonic() < deadline:
            try:
                seen.append(json.loads(lines.get(timeout=1))["name"])
            except queue.Empty:
                continue
        assert sorted(seen) == ["RunnableSequence", "new_a", "new_b"]
    finally:
        follower.send_signal(signal.SIGINT)
        code = follower.wait(timeout=30)
        reader.join(timeout=5)
        errors = follower.stderr.read() if follower.stderr else ""
        for stream in (follower.stdout, follower.stderr):
            if stream is not None:
                stream.close()
    assert code == 0, errors


def test_traces_follow_prints_new_traces_once(stored: Stored) -> None:
    """`traces --follow` prints each trace that appears after the listing, once."""
    import signal
    import time

    step = RunnableLambda(lambda x: x, name="step")
    step.invoke(0, config={"callbacks": [stored.handler]})
    stored.flush()
    command = [str(_RUNSPAN), "traces", "--follow", "--format", "jsonl"]
    follower = subprocess.Popen(
        [*command, "--database-url", stored.read_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # the listing is printed and the follower polls
        for value in (1, 2):
            step.invoke(value, config={"callbacks": [stored.handler]})
        stored.flush()
        time.sleep(3)
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    traces = [json.loads(line)["trace_id"] for line in out.splitlines()]
    assert len(traces) == 3  # the one listed, then the two new ones
    assert len(set(traces)) == 3

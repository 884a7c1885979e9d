"""The runspan command: the demo, and run history from the database."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from runspan.cli import main
from runspan.storage.migrate import head_revision
from tests.support import RUNSPAN


def invoke(*args: str) -> tuple[int, str]:
    # A wide terminal, so that rich does not cut table cells.
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def demo_db(fresh_globals: None, tmp_path: Path) -> str:
    """A database holding the demo's two traces."""
    url = f"sqlite:///{tmp_path / 'runspan.db'}"
    code, out = invoke("demo", "--database-url", url)
    assert code == 0, out
    return url


class TestDemo:
    def test_stores_the_runs_and_draws_them_back_from_sql(self, demo_db: str) -> None:
        """runspan demo runs the chain offline, stores it, prints both trees read back from
        SQL (names, status, model, tokens, first token) and three SQL queries to paste."""
        code, out = invoke("demo", "--database-url", demo_db)
        assert code == 0, out
        assert "Pack a light raincoat" in out
        assert "read back from SQL" in out
        assert len(re.findall(r"trace [0-9a-f]{32} · 11 runs", out)) == 2
        for name in (
            "travel_assistant",
            "execute_tool weather_forecast",
            "TravelGuideRetriever",
            "chat demo-gpt",
            "StrOutputParser",
        ):
            assert name in out
        assert "tokens 64→12" in out
        assert "first token" in out
        assert " error" not in out
        assert out.count("SELECT") == 3
        assert "FROM llm_calls" in out

    def test_json_for_scripts(self, fresh_globals: None, tmp_path: Path) -> None:
        """--json prints the stored trees: ids, status, tokens and children."""
        code, out = invoke("demo", "--json", "--database-url", f"sqlite:///{tmp_path / 'd.db'}")
        assert code == 0, out
        roots = json.loads(out)
        assert [root["name"] for root in roots] == ["travel_assistant", "travel_assistant"]
        model = next(c for c in roots[0]["children"] if c["name"] == "chat demo-gpt")
        assert (model["run_type"], model["status"], model["model_name"]) == (
            "llm",
            "ok",
            "demo-gpt",
        )
        assert (model["input_tokens"], model["output_tokens"]) == (64, 12)
        assert model["trace_id"] == roots[0]["trace_id"]

    def test_default_database_is_runspan_db(self, fresh_globals: None) -> None:
        """Without --database-url the demo uses RUNSPAN_DATABASE_URL (set by the fixture)."""
        code, out = invoke("demo")
        assert code == 0, out
        assert "runspan.db" in out


class TestRuns:
    def test_lists_newest_first_with_filters(self, demo_db: str) -> None:
        """runspan runs lists runs; filters narrow them; --json is for scripts."""
        code, out = invoke("runs", "--database-url", demo_db, "--type", "llm", "--json")
        assert code == 0, out
        runs = json.loads(out)
        assert len(runs) == 2
        assert {run["name"] for run in runs} == {"chat demo-gpt"}
        assert runs[0]["start_ns"] >= runs[1]["start_ns"]
        code, out = invoke("runs", "--database-url", demo_db, "--roots", "--limit", "1")
        assert code == 0
        assert "travel_assistant" in out
        assert "chat demo-gpt" not in out
        code, out = invoke("runs", "--database-url", demo_db, "--contains", "Paris", "--json")
        assert code == 0
        assert json.loads(out)
        code, out = invoke(
            "runs", "--database-url", demo_db, "--status", "running", "--older-than", "5m"
        )
        assert code == 0
        assert "no runs match" in out

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--status", "done"], "running, ok, error, unfinished"),
            (["--since", "yesterday"], "neither an age"),
            (["--older-than", "5 parsecs"], "not an age"),
            (["--metadata", "novalue"], "KEY=VALUE"),
        ],
    )
    def test_bad_filters_are_one_clear_line(
        self, demo_db: str, args: list[str], message: str
    ) -> None:
        code, out = invoke("runs", "--database-url", demo_db, *args)
        assert code != 0
        assert message in out
        assert "Traceback" not in out

    def test_a_missing_database_says_how_to_get_one(self, tmp_path: Path) -> None:
        code, out = invoke("runs", "--database-url", f"sqlite:///{tmp_path / 'none.db'}")
        assert code == 1
        assert "no runspan database" in out
        assert "runspan demo" in out
        assert not (tmp_path / "none.db").exists()


class TestShow:
    def test_draws_a_tree_by_run_id_or_trace_id(self, demo_db: str) -> None:
        """runspan show takes a run id or a trace id and draws durations, status and tokens."""
        _, out = invoke("runs", "--database-url", demo_db, "--roots", "--json")
        root = json.loads(out)[0]
        for wanted in (root["run_id"], root["trace_id"]):
            code, out = invoke("show", wanted, "--database-url", demo_db)
            assert code == 0, out
            assert "travel_assistant" in out
            assert "█" in out
            assert "ms" in out
            assert "tokens 64→12" in out
            assert "ok" in out
        code, out = invoke("show", root["run_id"], "--database-url", demo_db, "--json")
        (tree,) = json.loads(out)
        assert len(tree["children"]) == 5

    def test_bad_and_unknown_ids(self, demo_db: str) -> None:
        code, out = invoke("show", "nope", "--database-url", demo_db)
        assert code == 1
        assert "not an id" in out
        code, out = invoke("show", "0" * 32, "--database-url", demo_db)
        assert code == 1
        assert "no run or trace" in out


class TestStats:
    @pytest.mark.parametrize("by", ["name", "model", "day"])
    def test_groups(self, demo_db: str, by: str) -> None:
        code, out = invoke("stats", "--by", by, "--database-url", demo_db, "--json")
        assert code == 0, out
        stats = json.loads(out)
        assert stats
        assert all(stat["p50_ms"] is not None for stat in stats)
        if by == "model":
            assert stats[0]["key"] == "demo-gpt"
            assert stats[0]["input_tokens"] == 128
        code, out = invoke("stats", "--by", by, "--database-url", demo_db)
        assert code == 0
        assert "p95" in out


class TestSql:
    def test_reads(self, demo_db: str) -> None:
        code, out = invoke(
            "sql", "SELECT count(*) AS n FROM runs", "--database-url", demo_db, "--json"
        )
        assert code == 0
        assert json.loads(out) == [{"n": 22}]

    def test_a_statement_may_open_with_a_comment(self, demo_db: str) -> None:
        """The documented queries start with a "-- sqlite only" comment: pasted as they are,
        they run; a misspelt option is still a usage error, never SQL."""
        pasted = "-- sqlite only\nSELECT count(*) AS n FROM runs"
        done = subprocess.run(
            [str(RUNSPAN), "sql", pasted, "--database-url", demo_db, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [{"n": 22}]
        code, out = invoke("sql", "--wdie", "--database-url", demo_db)
        assert code == 2
        assert "No such option '--wdie'" in out

    @pytest.mark.parametrize(
        "statement",
        ["DELETE FROM runs", "UPDATE runs SET name = 'x'", "DROP TABLE runs", "SELEC 1"],
    )
    def test_refuses_writes_and_reports_bad_sql(self, demo_db: str, statement: str) -> None:
        code, out = invoke("sql", statement, "--database-url", demo_db)
        assert code == 1
        assert out.startswith("Error:")
        _, count = invoke(
            "sql",
            "SELECT count(*) AS n FROM runs WHERE name <> 'x'",
            "--database-url",
            demo_db,
            "--json",
        )
        assert json.loads(count) == [{"n": 22}]


class TestPruneAndUpgrade:
    def test_prune_deletes_only_what_is_older(self, demo_db: str) -> None:
        code, out = invoke("prune", "--older-than", "30d", "--database-url", demo_db)
        assert code == 0
        assert "deleted 0 traces" in out
        time.sleep(0.05)
        code, out = invoke("prune", "--older-than", "0.01s", "--dry-run", "--database-url", demo_db)
        assert code == 0, out
        assert "would delete 2 traces (22 runs)" in out
        code, out = invoke("sql", "SELECT count(*) AS n FROM runs", "--database-url", demo_db)
        assert "22" in out  # a dry run changes nothing
        code, out = invoke("prune", "--older-than", "0.01s", "--database-url", demo_db, "--json")
        assert code == 0, out
        pruned = json.loads(out)
        assert (pruned["traces"], pruned["runs"], pruned["dry_run"]) == (2, 22, False)
        assert isinstance(pruned["freed_bytes"], int)  # SQLite gives the space back

    def test_db_upgrade(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'new.db'}"
        code, out = invoke("db", "upgrade", "--database-url", url)
        assert code == 0
        assert f"is at schema {head_revision()}" in out
        code, out = invoke("runs", "--database-url", url)
        assert code == 0
        assert "no runs match" in out


class TestSqlValues:
    def test_long_values_are_whole_when_piped_and_marked_in_a_terminal(self, demo_db: str) -> None:
        """Piped, `runspan sql` prints every value whole; in a terminal a long value is cut
        with a marker naming --wide, which prints it whole."""
        import os
        import subprocess
        import sys

        query = "SELECT inputs FROM runs WHERE name = 'ChatPromptTemplate' LIMIT 1"
        command = [str(Path(sys.executable).parent / "runspan"), "sql", query]
        command += ["--database-url", demo_db]
        piped = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert piped.returncode == 0, piped.stderr
        terminal = {**os.environ, "COLUMNS": "200", "FORCE_COLOR": "1"}  # rich: a terminal
        marked = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False, env=terminal
        )
        assert "--wide]" not in piped.stdout
        assert "--wide]" in marked.stdout
        whole = subprocess.run(
            [*command, "--wide"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=terminal,
        )
        assert "--wide]" not in whole.stdout


# Run the command in a fresh interpreter as its console script does; an exit function the
# "app" registered reports what was loaded, proving exit functions still run.
_RUN_AND_REPORT = """
import atexit, json, sys
atexit.register(lambda: print("LOADED " + json.dumps(sorted(sys.modules))))
sys.argv = ["runspan", *sys.argv[1:]]
from runspan._entry import run
run()
"""

_NOT_FOR_READING = (
    "langchain_core",
    "langsmith",
    "grpc",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "sqlalchemy.dialects.postgresql",
    "alembic",
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _loaded(stdout: str) -> list[str]:
    (line,) = (line for line in stdout.splitlines() if line.startswith("LOADED "))
    return list(json.loads(line.removeprefix("LOADED ")))


class TestStartAndExit:
    def test_a_listing_on_sqlite_loads_only_what_reads(self, demo_db: str) -> None:
        """`runspan runs` on SQLite starts without LangChain, gRPC, the OpenTelemetry SDK,
        Alembic or SQLAlchemy's PostgreSQL dialect: each costs start-up time a user waits for."""
        result = _run("runs", "--database-url", demo_db)
        assert result.returncode == 0, result.stderr
        loaded = _loaded(result.stdout)
        assert "sqlalchemy" in loaded
        assert [name for name in loaded if name.startswith(_NOT_FOR_READING)] == []

    def test_version_loads_no_command(self, demo_db: str) -> None:
        result = _run("--version")
        assert result.returncode == 0
        assert result.stdout.startswith("runspan, version ")
        assert [name for name in _loaded(result.stdout) if name.startswith("runspan.cli")] == []

    def test_piped_output_is_whole_and_exit_statuses_are_kept(self, demo_db: str) -> None:
        """The command leaves without the interpreter's teardown; nothing it printed is lost and
        its status is what it says."""
        with sqlite3.connect(demo_db.removeprefix("sqlite:///")) as connection:
            (stored,) = connection.execute("SELECT count(*) FROM runs").fetchone()
        listing = subprocess.run(
            [str(RUNSPAN), "runs", "--all", "--limit", "100000", "--format", "jsonl"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"RUNSPAN_DATABASE_URL": demo_db, "PATH": ""},
        )
        assert listing.returncode == 0, listing.stderr
        assert len([json.loads(line) for line in listing.stdout.splitlines()]) == stored

        failed = _run("show", "ffffffffffff", "--database-url", demo_db)
        assert failed.returncode == 1
        assert "ffffffffffff" in failed.stderr
        assert "LOADED " in failed.stdout  # the exit functions ran on the way out too

        misused = _run("runs", "--no-such-option")
        assert misused.returncode == 2
        assert "No such option" in misused.stderr

"""`runspan show`: what a user came to see under each run, in an 80-column terminal, through
the real command, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

from tests.storage.conftest import Stored
from tests.support import run_agent, runspan_cli

_RUNSPAN = Path(sys.executable).parent / "runspan"


def _show(url: str, *args: str) -> str:
    done = runspan_cli(url, "show", *args, columns=80)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _roots(url: str) -> list[dict[str, object]]:
    done = runspan_cli(url, "runs", "--roots", "--json")
    assert done.returncode == 0, done.stderr
    found: list[dict[str, object]] = json.loads(done.stdout)
    return found


class TestShow:
    def test_an_agent_run_reads_as_a_conversation(self, stored: Stored) -> None:
        """A ReAct agent with two tool calls: the model's conversation (system, human, the
        tool calls with their arguments and ids, the tool results, the answer), the tools
        offered, each tool's arguments and result, tokens; every line fits 80 columns, and
        long values are folded with a marker that --full removes."""
        assert run_agent(stored.handler) == "In Oslo it is 14:05, sunny and 21C."
        stored.flush()
        [root] = _roots(stored.read_url)
        shown = _show(stored.read_url, str(root["trace_id"]))
        for expected in (
            "system: You are a travel assistant.",
            "user: Weather and time in Oslo?",
            "→ get_weather(city=Oslo) [call_w1]",
            "→ get_time(city=Oslo) [call_t1]",
            "tool: [call_w1] sunny and 21C in Oslo",
            "assistant: In Oslo it is 14:05, sunny and 21C.",
            "tools offered: get_weather, get_time",
            'args {"city": "Oslo"}',
            "result 14:05 in Oslo",
            "tokens 52→18",
        ):
            assert expected in shown, expected
        assert all(len(line) <= 80 for line in shown.splitlines())
        assert "[--full]" in shown
        assert not shown.startswith("subtree")
        full = _show(stored.read_url, str(root["trace_id"]), "--full")
        assert "[--full]" not in full
        assert "remaining_steps" in full

    def test_a_run_id_shows_its_subtree_and_errors_show_their_cause(self, stored: Stored) -> None:
        """A failed run shows its error's type and message, and with --full its stack trace;
        a run's own id draws its subtree, named as one."""

        def lookup(city: str) -> str:
            raise KeyError(f"no weather station in {city}")

        chain = RunnableLambda(lambda x: x, name="ask") | RunnableLambda(lookup, name="lookup")
        with pytest.raises(KeyError):
            chain.invoke("Atlantis", config={"callbacks": [stored.handler]})
        stored.flush()
        with stored.store() as store:
            [failed] = [run for run in store.runs() if run.name == "lookup"]
        shown = _show(stored.read_url, str(failed.run_id))
        assert shown.startswith(f"subtree of lookup in trace {failed.trace_id}")
        words = " ".join(shown.split())
        assert "KeyError" in words
        assert "error 'no weather station in Atlantis'" in words
        assert "Traceback" not in shown
        assert "Traceback" in _show(stored.read_url, str(failed.run_id), "--full")

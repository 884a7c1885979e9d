"""The seed line alone stores runs: a fresh interpreter with no ``runspan.configure()``.

``chain.with_config(callbacks=[runspan.TracingCallbackHandler()]).invoke(...)`` is all an app
has written; runspan falls back to a provider of its own (never installed globally), stores
where ``configure()`` would have, says so in one INFO line, and steps aside for a provider the
app sets later.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

_RUNSPAN = Path(sys.executable).parent / "runspan"

_SEED = """
    import logging, sys
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda
    import runspan

    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("opentelemetry").setLevel(logging.WARNING)
    prompt = ChatPromptTemplate.from_template("What is 1 + {number}?")
    model = RunnableLambda(lambda value: "three", name="model")
    chain_with_callbacks = (prompt | model).with_config(
        callbacks=[runspan.TracingCallbackHandler()]
    )
    for number in range(3):
        chain_with_callbacks.invoke({"number": str(number)})
"""


def _run(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNSPAN_"))}
    clean["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _runs(url: str) -> list[dict[str, object]]:
    listed = subprocess.run(
        [str(_RUNSPAN), "runs", "--all", "--json", "--limit", "100", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, object]] = json.loads(listed.stdout)
    return found


class TestSeedLine:
    def test_alone_it_stores_runs_in_runspan_db_and_says_so(self, tmp_path: Path) -> None:
        """With no configure() and no variables, runs land in ./runspan.db (flushed at exit),
        and one INFO line says where and how to choose."""
        done = _run(_SEED, tmp_path)
        assert done.returncode == 0, done.stderr
        notices = [line for line in done.stderr.splitlines() if line.startswith("runspan ")]
        assert len(notices) == 1, done.stderr
        assert "INFO" in notices[0]
        assert "sqlite:///runspan.db" in notices[0]
        assert "runspan.configure()" in notices[0]
        runs = _runs(f"sqlite:///{tmp_path / 'runspan.db'}")
        assert sorted(str(r["name"]) for r in runs) == sorted(
            ["RunnableSequence", "ChatPromptTemplate", "model"] * 3
        )
        assert {r["service_name"] for r in runs} == {"langchain-app"}

    def test_the_variables_choose_where(self, tmp_path: Path) -> None:
        """RUNSPAN_DATABASE_URL and OTEL_SERVICE_NAME are honoured, as configure() would."""
        url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
        done = _run(_SEED, tmp_path, RUNSPAN_DATABASE_URL=url, OTEL_SERVICE_NAME="seedling")
        assert done.returncode == 0, done.stderr
        assert not (tmp_path / "runspan.db").exists()
        runs = _runs(url)
        assert len(runs) == 9
        assert {r["service_name"] for r in runs} == {"seedling"}

    def test_a_bad_variable_fails_where_the_handler_is_made(self, tmp_path: Path) -> None:
        """A bad RUNSPAN_DATABASE_URL is an error from TracingCallbackHandler(), naming it,
        not a silent chain."""
        done = _run(_SEED, tmp_path, RUNSPAN_DATABASE_URL="oracle://scott@db/runs")
        assert done.returncode == 1
        assert "RUNSPAN_DATABASE_URL" in done.stderr
        assert "Traceback" in done.stderr  # raised into the app at start-up, as it should be

    def test_an_app_that_sets_its_own_provider_later_gets_its_own(self, tmp_path: Path) -> None:
        """Runs before the app installs its provider are runspan's; runs after go to the app's
        provider only, and runspan's provider was never installed globally."""
        script = (
            _SEED
            + """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    exporter = InMemorySpanExporter()
    mine = TracerProvider()
    mine.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(mine)
    chain_with_callbacks.invoke({"number": "9"})
    print(len(exporter.get_finished_spans()))
"""
        )
        done = _run(script, tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "3"
        assert len(_runs(f"sqlite:///{tmp_path / 'runspan.db'}")) == 9

    def test_runspans_variables_are_not_read_under_the_apps_provider(self, tmp_path: Path) -> None:
        """With a global provider of the app's, the handler uses it and never reads runspan's
        own variables: one meant for something else does not stop the app."""
        script = """
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from langchain_core.runnables import RunnableLambda
            import runspan

            trace.set_tracer_provider(TracerProvider())
            handler = runspan.TracingCallbackHandler()
            print(RunnableLambda(lambda x: x + 1).invoke(1, config={"callbacks": [handler]}))
        """
        done = _run(script, tmp_path, RUNSPAN_DATABASE_URL="oracle://scott@db/runs")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "2"
        assert not (tmp_path / "runspan.db").exists()

"""A process stopped with SIGTERM keeps its runs, without runspan taking the app's own handler.

Each case runs in a fresh interpreter, as an application would: ``runspan.configure()`` at
start-up, runs, then SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, database: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNSPAN_"))}
    env["RUNSPAN_DATABASE_URL"] = f"sqlite:///{database}"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _statuses(database: Path) -> list[str]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT status FROM runs")).scalars())
    finally:
        engine.dispose()


# Runs that end just before the signal: the writer's batch interval (1 s) has not come, so only
# a flush on the way out can store them.
_RUNS_THEN = """
    import os, signal, time
    from langchain_core.runnables import RunnableLambda
    import runspan

    {before}
    runspan.configure()
    chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
    for i in range(20):
        chain.invoke(i, config={{"callbacks": [runspan.TracingCallbackHandler()]}})
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
    print("not stopped")
"""


class TestSigterm:
    def test_runs_ended_just_before_sigterm_are_stored(self, tmp_path: Path) -> None:
        """SIGTERM, with no handler of the app's, still ends the process by SIGTERM, and every
        run that ended before it is in the database."""
        database = tmp_path / "runs.db"
        done = _run(textwrap.dedent(_RUNS_THEN).format(before=""), database)
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert "not stopped" not in done.stdout
        assert _statuses(database) == ["ok"] * 60

    def test_the_applications_own_handler_is_kept(self, tmp_path: Path) -> None:
        """A SIGTERM handler the app installed before configure() stays in charge; when it
        exits the normal way, the exit flush stores the runs."""
        database = tmp_path / "runs.db"
        mine = """
            import sys
            def mine(signum, frame):
                print("the app's handler")
                sys.exit(3)
            signal.signal(signal.SIGTERM, mine)
        """
        done = _run(textwrap.dedent(_RUNS_THEN).format(before=textwrap.dedent(mine)), database)
        assert done.returncode == 3, done.stderr
        assert done.stdout.strip() == "the app's handler"
        assert _statuses(database) == ["ok"] * 60

    def test_configured_off_the_main_thread(self, tmp_path: Path) -> None:
        """configure() in another thread (where Python allows no signal handlers) works and
        leaves SIGTERM as it was."""
        database = tmp_path / "runs.db"
        script = """
            import signal, threading
            import runspan
            worker = threading.Thread(target=runspan.configure)
            worker.start()
            worker.join()
            assert runspan.configured_provider() is not None
            print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        """
        done = _run(script, database)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "True"

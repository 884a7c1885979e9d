"""runspan.testing, the helpers users test their own chains with."""

from __future__ import annotations

import pytest
from langchain_core.runnables import RunnableLambda

from runspan.testing import capture_spans, render_tree, span_tree


class TestCaptureSpans:
    def test_records_and_shows_the_tree(self) -> None:
        """capture_spans gives every span of the block, by name and as an indented tree."""
        chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
        with capture_spans() as capture:
            assert chain.invoke(1, config={"callbacks": [capture.handler]}) == 4
            assert capture.names() == ["RunnableSequence", "RunnableLambda", "RunnableLambda"]
            assert capture.render() == "RunnableSequence\n  RunnableLambda\n  RunnableLambda"
            assert render_tree(span_tree(capture.spans)) == capture.render()
            [root] = capture.tree()
            assert [node.name for node in root.walk()] == capture.names()

    def test_span_by_name_says_what_it_found(self) -> None:
        """span(name) fails clearly when there is not exactly one such span."""
        with capture_spans() as capture:
            RunnableLambda(lambda x: x).invoke(1, config={"callbacks": [capture.handler]})
            with pytest.raises(LookupError, match="found 0"):
                capture.span("missing")
            capture.clear()
            assert capture.spans == []

    def test_settings_pass_to_the_handler(self) -> None:
        """Handler settings given to capture_spans apply."""
        with capture_spans(capture_content=False) as capture:
            RunnableLambda(lambda x: x).invoke("secret", config={"callbacks": [capture.handler]})
            assert "input.value" not in (capture.span("RunnableLambda").attributes or {})


def test_a_killed_benchmark_stops_its_throwaway_cluster() -> None:
    """`kill` of a script inside ``postgres.serving()`` (the benchmarks) stops the cluster it
    started: pg_ctl's server would otherwise outlive the script, holding its port and files."""
    import os
    import signal
    import subprocess
    import sys

    from sqlalchemy import create_engine, text

    from runspan.testing import postgres

    if postgres._binaries() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI must run the PostgreSQL tests: no PostgreSQL binaries")
        pytest.skip("no PostgreSQL binaries (initdb) here")
    script = (
        "import time\nfrom runspan.testing import postgres\n"
        "with postgres.serving(fsync=False) as url:\n    print(url, flush=True)\n"
        "    time.sleep(120)\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != postgres.URL_ENV}
    # As a context manager, Popen closes the child's stdout pipe at the end: left to the garbage
    # collector, it warns in whichever test runs next.
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=environ
    ) as child:
        try:
            assert child.stdout is not None
            url = child.stdout.readline().strip()
            engine = create_engine(url, connect_args={"connect_timeout": 5})
            with engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar() == 1
            engine.dispose()
            child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=60) == 128 + signal.SIGTERM
            with pytest.raises(Exception, match=r"refused|connect"):
                create_engine(url, connect_args={"connect_timeout": 5}).connect()
        finally:
            child.kill()

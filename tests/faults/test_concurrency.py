"""One handler under heavy concurrency: 32 threads of 500 runs, and 500 asyncio tasks at once."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda
from opentelemetry.sdk.trace import TracerProvider

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.storage import Run, RunStore, StorageSpanProcessor


def _provider(url: str) -> TracerProvider:
    provider = TracerProvider(id_generator=RunIdGenerator())
    provider.add_span_processor(StorageSpanProcessor(url))
    return provider


def _check_every_trace(url: str, expected_inputs: set[str]) -> None:
    """Each input made exactly one trace of three finished runs, linked root → tag → echo, with
    the child's input being its own root's (so no run sits under another call's root)."""
    with RunStore(url) as store:
        rows = store.runs(limit=1_000_000)
    by_trace: dict[str, list[Run]] = defaultdict(list)
    for run in rows:
        by_trace[run.trace_id].append(run)
    assert len(by_trace) == len(expected_inputs)
    seen = set()
    for runs in by_trace.values():
        assert len(runs) == 3
        assert {run.status for run in runs} == {"ok"}  # none running, none unfinished
        (root,) = [run for run in runs if run.parent_run_id is None]
        (tag,) = [run for run in runs if run.name == "tag"]
        (echo,) = [run for run in runs if run.name == "echo"]
        assert tag.parent_run_id == root.run_id
        assert echo.parent_run_id == root.run_id
        assert tag.parent_span_id == root.span_id
        assert tag.inputs == root.inputs
        assert echo.inputs == tag.outputs == f"{root.inputs}!"
        seen.add(root.inputs)
    assert seen == expected_inputs


def _chain() -> Runnable[Any, Any]:
    return (
        RunnableLambda(lambda text: f"{text}!", name="tag")
        | RunnableLambda(lambda text: text, name="echo")
    ).with_config(run_name="call")


def test_32_threads_of_200_invokes_each(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'threads.db'}"
    provider = _provider(url)
    handler = TracingCallbackHandler(tracer_provider=provider)
    chain = _chain()
    failures: list[BaseException] = []

    def worker(thread: int) -> None:
        try:
            for n in range(200):
                text = f"t{thread}-{n}"
                assert chain.invoke(text, config={"callbacks": [handler]}) == f"{text}!"
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert provider.force_flush()
    provider.shutdown()
    _check_every_trace(url, {f"t{t}-{n}" for t in range(32) for n in range(200)})


def test_500_concurrent_asyncio_tasks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    provider = _provider(url)
    handler = TracingCallbackHandler(tracer_provider=provider)

    async def tag(text: str) -> str:
        await asyncio.sleep(0)  # hand over to the other tasks mid-run
        return f"{text}!"

    async def echo(text: str) -> str:
        await asyncio.sleep(0)
        return text

    chain = (RunnableLambda(tag, name="tag") | RunnableLambda(echo, name="echo")).with_config(
        run_name="call"
    )

    async def everything() -> list[str]:
        return await asyncio.gather(
            *(chain.ainvoke(f"a{n}", config={"callbacks": [handler]}) for n in range(500))
        )

    assert asyncio.run(everything()) == [f"a{n}!" for n in range(500)]
    assert provider.force_flush()
    provider.shutdown()
    _check_every_trace(url, {f"a{n}" for n in range(500)})

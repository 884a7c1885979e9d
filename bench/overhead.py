"""What runspan's handler costs per invoke, next to no handler and a no-op handler.

Two chains: ``prompt | fake chat model | parser`` (4 runs per invoke) and a chain nested ten
levels deep through lambdas that invoke the level below (28 runs per invoke; the count is
measured and printed). Four variants, interleaved round by round in one process so that drift
hits them alike: no callbacks; a no-op ``BaseCallbackHandler`` with ``run_inline = True``
(LangChain's own callback machinery, the floor any tracer pays); runspan's handler on an SDK
provider whose ``BatchSpanProcessor`` feeds an exporter that drops spans; and runspan with its
SQLite writer (``StorageSpanProcessor``) on a temporary file. Background CPU is the process CPU
time not spent on the main thread during runspan's rounds (the batch processor's worker
thread), plus the flush that writes the rest of a round.

    python bench/overhead.py [--rounds 15] [--invokes 200]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.storage import StorageSpanProcessor
from runspan.testing import capture_spans


class NoOpHandler(BaseCallbackHandler):
    run_inline = True


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def prompt_model_parser() -> Runnable[Any, Any]:
    model = GenericFakeChatModel(messages=itertools.repeat(AIMessage(content="three")))
    return ChatPromptTemplate.from_template("What is 1 + {number}?") | model | StrOutputParser()


def nested_ten_steps() -> Runnable[Any, Any]:
    chain: Runnable[Any, Any] = RunnableLambda(lambda x: x)
    for _ in range(9):
        inner = chain
        chain = RunnableLambda(lambda x: x) | RunnableLambda(inner.invoke)
    return chain


def time_invokes(invoke: Callable[[], Any], count: int) -> tuple[float, float, float]:
    """Wall µs, main-thread CPU µs and process CPU µs per invoke."""
    wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
    for _ in range(count):
        invoke()
    return (
        (time.perf_counter() - wall) / count * 1e6,
        (time.thread_time() - cpu) / count * 1e6,
        (time.process_time() - process) / count * 1e6,
    )


def count_runs(chain: Runnable[Any, Any], payload: Any) -> int:
    with capture_spans() as capture:
        chain.invoke(payload, config={"callbacks": [capture.handler]})
        return len(capture.spans)


def measure(name: str, chain: Runnable[Any, Any], payload: Any, rounds: int, invokes: int) -> None:
    provider = TracerProvider(id_generator=RunIdGenerator(), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    stored = TracerProvider(id_generator=RunIdGenerator(), shutdown_on_exit=False)
    folder = tempfile.mkdtemp(prefix="runspan-overhead-")
    stored.add_span_processor(StorageSpanProcessor(f"sqlite:///{folder}/runs.db"))
    variants: dict[str, list[BaseCallbackHandler]] = {
        "no handler": [],
        "no-op handler": [NoOpHandler()],
        "runspan": [TracingCallbackHandler(provider)],
        "runspan + SQLite": [TracingCallbackHandler(stored)],
    }
    providers = {"runspan": provider, "runspan + SQLite": stored}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    background: dict[str, list[float]] = {v: [] for v in providers}
    for _ in range(3):  # warm-up
        for callbacks in variants.values():
            chain.invoke(payload, config={"callbacks": callbacks})
    for _ in range(rounds):
        for variant, callbacks in variants.items():
            config: Any = {"callbacks": callbacks}
            per_invoke, main_cpu, process_cpu = time_invokes(
                lambda config=config: chain.invoke(payload, config=config), invokes
            )
            wall[variant].append(per_invoke)
            if variant in providers:
                # The worker's export counts towards this round: flush before the clock stops.
                per_invoke_flush = time.process_time()
                providers[variant].force_flush()
                flushed = (time.process_time() - per_invoke_flush) / invokes * 1e6
                background[variant].append(max(0.0, process_cpu - main_cpu) + flushed)
    provider.shutdown()
    stored.shutdown()
    shutil.rmtree(folder, ignore_errors=True)

    base = statistics.median(wall["no handler"])
    noop = statistics.median(wall["no-op handler"])
    print(f"\n{name}: {count_runs(chain, payload)} runs per invoke, median of {rounds} rounds")
    print(f"  no handler        {base:9.1f} µs/invoke")
    print(f"  no-op handler     {noop:9.1f} µs/invoke  (+{noop - base:.1f})")
    for variant in providers:
        ours = statistics.median(wall[variant])
        bg = statistics.median(background[variant])
        print(
            f"  {variant:17s} {ours:9.1f} µs/invoke  (+{ours - base:.1f}),"
            f" background CPU {bg:.1f} µs/invoke"
        )
        print(f"    / no-op: {ours / noop:.2f}x, with background CPU: {(ours + bg) / noop:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--invokes", type=int, default=200)
    args = parser.parse_args()
    measure(
        "prompt | fake chat model | parser",
        prompt_model_parser(),
        {"number": "2"},
        args.rounds,
        args.invokes,
    )
    measure(
        "chain nested ten levels deep",
        nested_ten_steps(),
        1,
        args.rounds,
        max(1, args.invokes // 4),
    )


if __name__ == "__main__":
    main()

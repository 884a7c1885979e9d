"""runspan against the LangChain tracers users would pick instead, on the same workloads.

Variants, interleaved round by round in one process (warm-up first): no handler; a no-op
``BaseCallbackHandler`` with ``run_inline = True`` (the floor LangChain's callback machinery
sets); runspan with an in-memory exporter; runspan with its SQLite writer; runspan with SQLite
and OTLP to a receiver in another process on loopback; OpenInference's ``LangChainInstrumentor``
and OpenLLMetry's ``LangchainInstrumentor``, each on an SDK provider with an in-memory exporter
(instrumented before their round, uninstrumented after).

Per invoke: median wall time, what it adds over no handler, the ratio to the no-op handler, and
the background CPU: what the tracers' own threads (batch processors, the SQL writer, gRPC) spent
during the round, plus the flush that finishes the round's exports. The threads of LangChain's
``.batch`` pool are the application's: the wall time already holds their work, which the main
thread waits for. (Linux: per-thread CPU clocks.) Then the CPU of every thread of the process
over the round and its flush, and its ratio to the no-op handler's: the wall time also holds
the time the app's thread waited for the GIL while a tracer's thread ran Python, so wall time
plus background CPU counts that work twice (BENCHMARKS.md, "Two measures").

Memory: each variant in a fresh process runs 20,000 invokes of ``prompt | chat model | parser``
under tracemalloc; in-memory exporters are emptied every 1,000 invokes, so what stays is the
tracer's own state. Printed: what Python objects still hold at the end, the peak on the way, and
how much RSS grew (which includes the allocator's high-water mark).

    pip install -e '.[bench]'
    python bench/compare.py [--rounds 9] [--seconds 0.25] [--no-memory]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import otlp_sink
from workloads import Workload, prompt_model_parser, workloads

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.batching import QuietBatchSpanProcessor
from runspan.exporters import OtlpSettings, otlp_span_processor
from runspan.storage import StorageSpanProcessor

MEMORY_INVOKES = 20_000
# Each run's content is capped (100,000 characters by default): a large input must not pile up.
BIG_INVOKES = 200
BIG_INPUT_CHARS = 1_000_000


class NoOpHandler(BaseCallbackHandler):
    run_inline = True


class SpanCounter(SpanProcessor):
    """Counts ended spans, to show that each tracer traced every run."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


class Variant:
    """One way of tracing: what to pass as callbacks, and what to do around a round."""

    name = ""

    def __init__(self) -> None:
        self.callbacks: list[BaseCallbackHandler] = []
        self.provider: TracerProvider | None = None
        self.memory: InMemorySpanExporter | None = None
        self.counter = SpanCounter()

    def start(self) -> None:
        """Before a round."""

    def finish(self) -> None:
        """After a round: the exports it caused are done when this returns."""
        if self.provider is not None:
            self.provider.force_flush()
        if self.memory is not None:
            self.memory.clear()

    def close(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()

    def _in_memory_provider(self, **kwargs: Any) -> TracerProvider:
        self.memory = InMemorySpanExporter()
        provider = TracerProvider(shutdown_on_exit=False, **kwargs)
        provider.add_span_processor(self.counter)
        # A queue that holds a whole round, so that no tracer is spared work by dropping spans.
        provider.add_span_processor(BatchSpanProcessor(self.memory, max_queue_size=1 << 17))
        self.provider = provider
        return provider


class NoHandler(Variant):
    name = "no handler"


class NoOp(Variant):
    name = "no-op handler"

    def __init__(self) -> None:
        super().__init__()
        self.callbacks = [NoOpHandler()]


class RunspanInMemory(Variant):
    name = "runspan, in memory"

    def __init__(self) -> None:
        super().__init__()
        provider = self._in_memory_provider(id_generator=RunIdGenerator())
        self.callbacks = [TracingCallbackHandler(tracer_provider=provider)]


class RunspanSqlite(Variant):
    name = "runspan + SQLite"

    def __init__(self, otlp_endpoint: str | None = None) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="runspan-compare-")
        provider = TracerProvider(id_generator=RunIdGenerator(), shutdown_on_exit=False)
        provider.add_span_processor(self.counter)
        self.processors: list[QuietBatchSpanProcessor] = [
            StorageSpanProcessor(f"sqlite:///{self.folder}/runs.db")
        ]
        if otlp_endpoint is not None:
            settings = OtlpSettings.build(otlp_endpoint, protocol="grpc")
            assert settings is not None
            self.processors.append(otlp_span_processor(settings))
        for processor in self.processors:
            provider.add_span_processor(processor)
        self.provider = provider
        self.callbacks = [TracingCallbackHandler(tracer_provider=provider)]

    def close(self) -> None:
        dropped = sum(processor.dropped for processor in self.processors)
        if dropped:
            print(f"({self.name}: its queues dropped {dropped:,} spans in all)")
        super().close()
        shutil.rmtree(self.folder, ignore_errors=True)


class RunspanSqliteOtlp(RunspanSqlite):
    name = "runspan + SQLite + OTLP"


class Instrumented(Variant):
    """A peer's instrumentor on an SDK provider with an in-memory exporter."""

    def __init__(self, make: Callable[[], Any]) -> None:
        super().__init__()
        self.instrumentor = make()
        self._in_memory_provider()

    def start(self) -> None:
        self._manager_init = BaseCallbackManager.__dict__["__init__"]
        self.instrumentor.instrument(tracer_provider=self.provider)

    def finish(self) -> None:
        super().finish()
        self.instrumentor.uninstrument()
        # OpenLLMetry's uninstrument() leaves its wrapper on BaseCallbackManager.__init__, which
        # would go on tracing every other variant's rounds: put the original back.
        BaseCallbackManager.__init__ = self._manager_init  # type: ignore[method-assign]


def _openinference() -> Any:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    return LangChainInstrumentor()


def _openllmetry() -> Any:
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    return LangchainInstrumentor()


PEERS: dict[str, Callable[[], Any]] = {"OpenInference": _openinference, "OpenLLMetry": _openllmetry}


def make_variants(otlp_endpoint: str) -> list[Variant]:
    made: list[Variant] = [
        NoHandler(),
        NoOp(),
        RunspanInMemory(),
        RunspanSqlite(),
        RunspanSqliteOtlp(otlp_endpoint),
    ]
    for name, make in PEERS.items():
        try:
            peer = Instrumented(make)
        except ImportError:
            print(f"({name} is not installed: pip install -e '.[bench]')")
            continue
        peer.name = name
        made.append(peer)
    return made


_TASKS = Path("/proc/self/task")


def _thread_cpu(tid: int) -> float:
    """CPU seconds of one thread of this process, a Python thread or not (gRPC's are C)."""
    try:
        return time.clock_gettime(((~tid) << 3) | 6)  # Linux's per-thread CPU clock of a tid
    except OSError:  # it has ended
        return 0.0


def _background_cpu() -> dict[int, float]:
    """CPU seconds so far of every thread but the application's own: its main thread, which
    the wall time measures, and the thread pools LangChain runs ``.batch`` in, whose work the
    main thread waits for (so the wall time holds it too). What is left is the tracers': batch
    processors' workers, the SQL writer, gRPC's threads."""
    app = {
        thread.native_id
        for thread in threading.enumerate()
        if thread is threading.main_thread() or thread.name.startswith("ThreadPoolExecutor")
    }
    return {int(tid): _thread_cpu(int(tid)) for tid in os.listdir(_TASKS) if int(tid) not in app}


def _round(workload: Workload, variant: Variant, invokes: int) -> tuple[float, float, float, float]:
    """Per invoke: wall µs, background CPU µs, the CPU µs of every thread, and spans."""
    config: Any = {"callbacks": variant.callbacks}
    spans = variant.counter.ended
    variant.start()
    before = _background_cpu()
    everything = time.process_time()
    wall = time.perf_counter()
    for _ in range(invokes):
        workload.call(config)
    wall = time.perf_counter() - wall
    flushing = time.thread_time()
    variant.finish()  # the exports the round caused, some of them on this thread
    flushed = time.thread_time() - flushing
    everything = time.process_time() - everything
    after = _background_cpu()
    background = sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items()) + flushed
    spans = (variant.counter.ended - spans) / invokes
    return wall / invokes * 1e6, background / invokes * 1e6, everything / invokes * 1e6, spans


def compare(
    workload: Workload, variants: list[Variant], rounds: int, seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Prints the workload's table; returns each variant's cost per invoke in µs, two ways: wall
    time plus background CPU, and the CPU of every thread (see BENCHMARKS.md, "Two measures")."""
    for variant in variants:  # warm-up, and the size of a round
        _round(workload, variant, 3)
    for variant in variants:  # no tracer may outlive its own rounds
        before = [v.counter.ended for v in variants]
        _round(workload, variants[0], 1)
        assert before == [v.counter.ended for v in variants], f"{variant.name} is still tracing"
    started = time.perf_counter()
    _round(workload, variants[0], 10)
    each = (time.perf_counter() - started) / 10
    invokes = max(5, int(seconds / max(each, 1e-6)))
    wall: dict[str, list[float]] = {v.name: [] for v in variants}
    background: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    spans: dict[str, float] = {}
    for _ in range(rounds):
        for variant in variants:
            gc.collect()
            per_invoke, bg, all_threads, spans[variant.name] = _round(workload, variant, invokes)
            wall[variant.name].append(per_invoke)
            background[variant.name].append(bg)
            cpu[variant.name].append(all_threads)
    base = statistics.median(wall["no handler"])
    noop = statistics.median(wall["no-op handler"])
    # What threads outside the tracers spend while idle (gRPC's pollers): no variant's own.
    base_bg = statistics.median(background["no handler"])
    print(f"\n{workload.name} ({invokes} invokes a round, median of {rounds} rounds)")
    noop_cpu = statistics.median(cpu["no-op handler"])
    print(
        f"  {'':26s} {'µs/invoke':>10s} {'added':>9s} {'/ no-op':>8s}"
        f" {'bg CPU µs':>10s} {'/ no-op, bg':>12s} {'CPU µs':>9s} {'/ no-op':>8s} {'spans':>6s}"
    )
    costs: dict[str, float] = {}
    cpu_costs: dict[str, float] = {}
    for variant in variants:
        ours = statistics.median(wall[variant.name])
        bg = max(0.0, statistics.median(background[variant.name]) - base_bg)
        costs[variant.name] = ours + bg
        cpu_costs[variant.name] = every = statistics.median(cpu[variant.name])
        traced = f"{spans[variant.name]:6.1f}" if variant.provider is not None else "     -"
        print(
            f"  {variant.name:26s} {ours:10.1f} {ours - base:+9.1f} {ours / noop:7.2f}x"
            f" {bg:10.1f} {(ours + bg) / noop:11.2f}x {every:9.1f} {every / noop_cpu:7.2f}x"
            f" {traced}"
        )
    return costs, cpu_costs


# The targets of the benchmark issue, for runspan with its SQLite writer, background CPU counted.
MAX_TIMES_NO_OP = 1.3
MAX_SHARE_OF_FASTEST_PEER = 1 / 3


def targets(
    results: dict[str, dict[str, float]], measure: str, variant: str = "runspan + SQLite"
) -> None:
    """Whether ``variant`` meets the targets on each workload, by ``measure``: at most 1.3 times
    the no-op handler, and at most a third of what the fastest peer adds."""
    print(
        f"\nTargets for {variant}, {measure}: at most {MAX_TIMES_NO_OP}x the no-op"
        f" handler, and at most {MAX_SHARE_OF_FASTEST_PEER:.2f} of what the fastest peer adds"
    )
    print(f"  {'':30s} {'added µs':>9s} {'/ no-op':>8s} {'':6s} {'/ fastest peer':>15s}")
    for name, costs in results.items():
        base = costs["no handler"]
        peers = {peer: costs[peer] - base for peer in PEERS if peer in costs}
        ours = costs[variant]
        times_no_op = ours / costs["no-op handler"]
        line = f"  {name:30s} {ours - base:+9.1f} {times_no_op:7.2f}x"
        line += f" {'met' if times_no_op <= MAX_TIMES_NO_OP else 'missed':6s}"
        if peers:
            fastest = min(peers, key=peers.__getitem__)
            share = (ours - base) / peers[fastest]
            verdict = "met" if share <= MAX_SHARE_OF_FASTEST_PEER else "missed"
            line += f" {share:6.2f} of {fastest} ({peers[fastest]:+.0f}) {verdict}"
        print(line)


# --- memory, one fresh process per variant -----------------------------------------------------


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_child(name: str, otlp_endpoint: str, big: bool) -> None:
    (variant,) = [v for v in make_variants(otlp_endpoint) if v.name == name]
    chain = prompt_model_parser()
    inputs = {"number": "7" * BIG_INPUT_CHARS if big else "2"}
    invokes = BIG_INVOKES if big else MEMORY_INVOKES
    config: Any = {"callbacks": variant.callbacks}
    variant.start()
    for _ in range(20 if big else 200):
        chain.invoke(inputs, config=config)
    if variant.provider is not None:
        variant.provider.force_flush()
    if variant.memory is not None:
        variant.memory.clear()
    gc.collect()
    before = _rss_kib()
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    for n in range(invokes):
        chain.invoke(inputs, config=config)
        if n % 1000 == 999 and variant.memory is not None:
            variant.provider.force_flush()  # type: ignore[union-attr]
            variant.memory.clear()
    if variant.provider is not None:
        variant.provider.force_flush()
    if variant.memory is not None:
        variant.memory.clear()
    gc.collect()
    retained, peak = tracemalloc.get_traced_memory()
    mib = 1024 * 1024
    print(
        json.dumps(
            {
                "retained_mib": (retained - traced_before) / mib,
                "peak_mib": (peak - traced_before) / mib,
                "growth_mib": (_rss_kib() - before) / 1024,
            }
        )
    )


def memory(names: list[str], otlp_endpoint: str, big: bool) -> None:
    if big:
        what = f"{BIG_INVOKES:,} invokes with a {BIG_INPUT_CHARS / 1e6:.0f} MB input each"
    else:
        what = f"{MEMORY_INVOKES:,} invokes"
    print(
        f"\nMemory over {what} of prompt | chat model | parser (MiB): still held by Python"
        " objects at the end, the peak on the way, the growth of RSS"
    )
    print(f"  {'':26s} {'retained':>9s} {'peak':>7s} {'RSS':>7s}")
    for name in names:
        command = [sys.executable, __file__, "--memory-child", name, "--otlp-endpoint"]
        command += [otlp_endpoint, *(["--big"] if big else [])]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(f"  {name:26s} failed: {result.stderr.strip().splitlines()[-1:]}")
            continue
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"  {name:26s} {figures['retained_mib']:+9.2f} {figures['peak_mib']:7.1f}"
            f" {figures['growth_mib']:+7.1f}"
        )


# --- the machine and the versions ----------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def describe_machine() -> None:
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    print(
        f"Machine: {os.cpu_count()} cores, {memory_kib / 1024 / 1024:.0f} GiB,"
        f" {platform.platform()}"
    )
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    for package in (
        "runspan",
        "langchain-core",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp",
        "openinference-instrumentation-langchain",
        "opentelemetry-instrumentation-langchain",
    ):
        print(f"  {package} {_version(package)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.25, help="length of one round")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--only", help="run only the workload whose name contains this")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--big", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--otlp-endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.otlp_endpoint, args.big)
        return

    if not _TASKS.is_dir():
        raise SystemExit(
            "bench/compare.py reads each thread's CPU time from Linux's per-thread clocks"
            f" ({_TASKS} is missing here): run it on Linux"
        )
    with otlp_sink.running() as endpoint:
        describe_machine()
        variants = make_variants(endpoint)
        results = {
            workload.name: compare(workload, variants, args.rounds, args.seconds)
            for workload in workloads()
            if args.only is None or args.only in workload.name
        }
        for variant in variants:
            variant.close()
        targets({name: costs for name, (costs, _) in results.items()}, "wall time + background CPU")
        targets({name: costs for name, (_, costs) in results.items()}, "CPU of every thread")
        if not args.no_memory:
            for big in (False, True):
                memory([variant.name for variant in variants], endpoint, big)


if __name__ == "__main__":
    main()

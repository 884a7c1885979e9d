"""Tail latency of a web service traced by runspan: does its background work stall the app?

A FastAPI app under uvicorn (one worker, one process) serves ``prompt | a chat model that awaits
5 ms | parser | lambda`` (async endpoint) or the same chain synchronously in uvicorn's thread
pool (sync endpoint). A load generator in another process sends requests open-loop (on a fixed
schedule, whatever the answers) and measures each from its scheduled time. The variants run
interleaved, each in a fresh server, repeated; medians of each percentile are printed.

Inside the server a probe thread sleeps 1 ms at a time and notes how late it wakes: a wake-up
late by more than the sleep is time another thread held the interpreter (the GIL), which is
what stalls the event loop too. Printed beside the latencies:

- stall: the probe's longest wait, whoever held the GIL (the app itself, a garbage collection);
- runspan: the longest of those waits spent running runspan's threads (their CPU time within
  the wait, read from each thread's CPU clock; an upper bound, as SQLite's own work in those
  threads runs without the GIL), leaving out the waits that overlap a full collection;
- in batch, in GC: how many of the slowest 1% of requests overlapped an export batch, and a
  full (generation 2) garbage collection;
- gen2/s, gen2 ms: full collections a second, and the longest (whichever thread ran it: one
  runs where an allocation crosses the threshold, runspan's threads included);
- failed: requests that failed, over all runs (kept in the latencies, at the time they failed).

Two variants are runspan + SQLite + OTLP with one thing changed: "no pauses" turns the
exporters' pauses off (what runspan did before it paused for the app); "no HTTP spans" turns
off FastAPI's own tracing of requests, which the other runspan variants record (FastAPI 0.16x
traces every request through the global tracer provider that ``runspan.configure()`` sets: a
span a request, and its cost, that runspan's variants carry and the no-op handler does not).

    python bench/latency.py [--seconds 30] [--rates 100,200] [--repeats 4] [--endpoints async,sync]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import otlp_sink

VARIANTS = (
    "no tracing",
    "no-op handler",
    "runspan + SQLite",
    "runspan + SQLite + OTLP",
    "no pauses",
    "no HTTP spans",
)

_SERVER = r"""
import asyncio, gc, inspect, os, sys, threading, time
from typing import Any

import uvicorn
from fastapi import FastAPI
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

variant, port, database, otlp, freeze = sys.argv[1:6]


class FiveMillisecondModel(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "five-ms"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        time.sleep(0.005)
        return self._result()

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        await asyncio.sleep(0.005)
        return self._result()

    def _result(self) -> ChatResult:
        usage = {"input_tokens": 12, "output_tokens": 9, "total_tokens": 21}
        message = AIMessage(content="Pack a raincoat.", usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])


class NoOp(BaseCallbackHandler):
    run_inline = True


callbacks: list[Any] = []
if variant == "no-op handler":
    callbacks = [NoOp()]
elif variant.startswith("runspan") or variant in ("no pauses", "no HTTP spans"):
    import runspan

    options: dict[str, Any] = {"database_url": database, "service_name": "latency"}
    if otlp:
        options.update(otlp_endpoint=otlp, otlp_protocol="grpc")
    runspan.configure(**options)
    callbacks = [runspan.TracingCallbackHandler()]

chain = (
    ChatPromptTemplate.from_template("What to pack for {city}?")
    | FiveMillisecondModel()
    | StrOutputParser()
    | RunnableLambda(lambda text: text.upper())
)
config = {"callbacks": callbacks}
# FastAPI (0.16x) traces each request itself through the global tracer provider: a span per
# request that runspan stores too. The variant "no HTTP spans" turns that off.
if variant == "no HTTP spans" and "telemetry" in inspect.signature(FastAPI).parameters:
    app = FastAPI(telemetry={"tracing": False})
else:
    app = FastAPI()
# The probe's late wake-ups: (when it slept, how late it woke, runspan's CPU meanwhile), in s.
late: list[tuple[float, float, float]] = []
batches: list[tuple[float, float]] = []  # (start, end) of each export batch
exporters = []
if callbacks and not isinstance(callbacks[0], NoOp):
    from runspan.exporters.otlp import OtlpSpanExporter
    from runspan.storage.exporter import SqlSpanExporter

    kinds = (SqlSpanExporter, OtlpSpanExporter)
    exporters = [o for o in gc.get_objects() if isinstance(o, kinds)]
    for exporter in exporters:
        if variant == "no pauses":
            exporter.slices.seconds = float("inf")

        def timed(spans, _export=exporter.export):
            started = time.time()
            try:
                return _export(spans)
            finally:
                batches.append((started, time.time()))

        exporter.export = timed
full_collections: list[tuple[float, float]] = []  # (start, seconds) of each full collection


def on_collection(phase: str, info: dict[str, int]) -> None:
    if info["generation"] == 2:
        if phase == "start":
            full_collections.append((time.time(), time.perf_counter()))
        else:
            start, began = full_collections[-1]
            full_collections[-1] = (start, time.perf_counter() - began)


gc.callbacks.append(on_collection)
# runspan's threads: the span processors' workers (named by the SDK).
clocks = [
    time.pthread_getcpuclockid(thread.ident)
    for thread in threading.enumerate()
    if thread.name.startswith("Otel") and thread.ident is not None
]


def runspan_cpu() -> float:
    return sum(time.clock_gettime(clock) for clock in clocks)


def probe() -> None:
    while True:
        asked, cpu = time.perf_counter(), runspan_cpu()
        time.sleep(0.001)
        woke = time.perf_counter()
        over = woke - asked - 0.001
        if over > 0.0005:
            late.append((time.time() - (woke - asked), over, min(over, runspan_cpu() - cpu)))


@app.get("/async")
async def answer_async() -> dict[str, str]:
    return {"answer": await chain.ainvoke({"city": "Oslo"}, config=config)}


@app.get("/sync")
def answer_sync() -> dict[str, str]:
    return {"answer": chain.invoke({"city": "Oslo"}, config=config)}


@app.get("/stats")
def stats() -> dict[str, Any]:
    return {
        "cpu": time.process_time(),
        "late": late,
        "batches": batches,
        "collections": full_collections,
    }


if freeze == "freeze":  # what a tuned app does once started: full collections skip all it has
    gc.callbacks.remove(on_collection)  # this collection is start-up's, not the load's
    gc.collect()
    gc.freeze()
    gc.callbacks.append(on_collection)
threading.Thread(target=probe, daemon=True).start()
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""

_LOAD = r"""
import asyncio, json, sys, time
import httpx

url, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])


async def main() -> None:
    results, failures = [], []
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=500)) as client:
        start = time.time() + 0.2

        async def one(scheduled: float) -> None:
            await asyncio.sleep(max(0.0, scheduled - time.time()))
            try:  # a failed request is counted and kept in the latencies, never lost
                response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as error:
                failures.append(f"{type(error).__name__}: {error}")
            results.append((scheduled, time.time() - scheduled))

        count = int(rate * seconds)
        await asyncio.gather(*(one(start + i / rate) for i in range(count)))
    print(json.dumps({"results": results, "failures": failures}))


asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _load_server(
    args: list[str], errors: Any, endpoint: str, rate: float, seconds: float
) -> tuple[list[tuple[float, float]], dict[str, Any]]:
    """Start the server, warm it up, load it; the load's results and the server's stats."""
    server = subprocess.Popen(args, stderr=errors)
    base = f"http://127.0.0.1:{args[4]}"
    try:
        for _ in range(400):
            if server.poll() is not None:
                errors.seek(0)
                raise SystemExit(f"the {args[3]!r} server failed:\n{errors.read()}")
            try:
                _get(f"{base}/stats")
                break
            except OSError:
                time.sleep(0.05)
        for _ in range(20):  # warm up: imports, the first model call, the database
            _get(f"{base}/{endpoint}")
        cpu_before = _get(f"{base}/stats")["cpu"]
        load = subprocess.run(
            [sys.executable, "-c", _LOAD, f"{base}/{endpoint}", str(rate), str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        )
        after = _get(f"{base}/stats")
        after["cpu"] -= cpu_before
        loaded = json.loads(load.stdout)
        after["failures"] = loaded["failures"]
        return loaded["results"], after
    finally:
        server.terminate()
        server.wait(30)


def run_once(
    variant: str, endpoint: str, *, rate: float, seconds: float, sink: str, freeze: bool
) -> dict[str, Any]:
    port = _free_port()
    otlp = sink if variant.endswith("OTLP") or variant in ("no pauses", "no HTTP spans") else ""
    frozen = "freeze" if freeze else ""
    with tempfile.TemporaryDirectory(prefix="runspan-latency-") as folder:
        database = f"sqlite:///{folder}/runs.db"
        args = [sys.executable, "-c", _SERVER, variant, str(port), database, otlp, frozen]
        with Path(folder, "server.err").open("w+") as errors:
            results, after = _load_server(args, errors, endpoint, rate, seconds)
    if after["failures"]:
        print(
            f"  ({variant}: {len(after['failures'])} requests failed, first:"
            f" {after['failures'][0]})",
            file=sys.stderr,
        )
    latencies = sorted(latency for _, latency in results)
    begun = results[0][0] - 1
    batches = [(s, e) for s, e in after["batches"] if e > begun]
    collections = [(s, s + took) for s, took in after["collections"] if s > begun]

    def overlaps(start: float, end: float, spans: list[tuple[float, float]]) -> bool:
        return any(s < end and e > start for s, e in spans)

    stalls = [
        (over, 0.0 if overlaps(start, start + 0.001 + over, collections) else ours)
        for start, over, ours in after["late"]
        if start > begun
    ]
    slowest = sorted(results, key=lambda item: item[1])[-max(1, len(results) // 100) :]
    in_batch = sum(overlaps(s, s + latency, batches) for s, latency in slowest)
    in_collection = sum(overlaps(s, s + latency, collections) for s, latency in slowest)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "max": latencies[-1] * 1000,
        "cpu": after["cpu"] * 1000 / len(results),
        "stall": max((over for over, _ in stalls), default=0.0) * 1000,
        "runspan": max((ours for _, ours in stalls), default=0.0) * 1000,
        "in_batch": in_batch / len(slowest),
        "in_gc": in_collection / len(slowest),
        "gc": len(collections) / seconds,
        "gc_ms": max((e - s for s, e in collections), default=0.0) * 1000,
        "failed": len(after["failures"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rates", default="100,200")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--endpoints", default="async,sync")
    parser.add_argument(
        "--freeze",
        action="store_true",
        help="every server calls gc.freeze() once started (the start-up heap leaves full GCs)",
    )
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.seconds:.0f} s a run, {args.repeats} runs a variant")
    with otlp_sink.running() as sink:
        for endpoint in args.endpoints.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
                for _ in range(args.repeats):  # interleaved: each round runs every variant
                    for variant in VARIANTS:
                        measured = run_once(
                            variant,
                            endpoint,
                            rate=rate,
                            seconds=args.seconds,
                            sink=sink,
                            freeze=args.freeze,
                        )
                        runs[variant].append(measured)
                print(f"\n{endpoint} endpoint, {rate:.0f} requests/s (ms; medians of runs)")
                print(
                    f"  {'variant':24s} {'p50':>6s} {'p95':>6s} {'p99':>6s} {'max':>6s}"
                    f" {'CPU/req':>7s} {'stall':>6s} {'runspan':>7s}"
                    f" {'in batch':>8s} {'in GC':>6s} {'gen2/s':>6s} {'gen2 ms':>7s} {'failed':>6s}"
                )
                for variant, found in runs.items():
                    m = {key: statistics.median(run[key] for run in found) for key in found[0]}
                    # The stalls: the longest of all runs, not a median.
                    worst = {key: max(run[key] for run in found) for key in found[0]}
                    print(
                        f"  {variant:24s} {m['p50']:6.1f} {m['p95']:6.1f} {m['p99']:6.1f}"
                        f" {m['max']:6.1f} {m['cpu']:7.2f} {worst['stall']:6.1f}"
                        f" {worst['runspan']:7.1f} {m['in_batch']:8.0%} {m['in_gc']:6.0%}"
                        f" {m['gc']:6.2f} {worst['gc_ms']:7.1f}"
                        f" {sum(run['failed'] for run in found):6d}"
                    )


if __name__ == "__main__":
    main()

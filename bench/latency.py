"""Tail latency of a web service traced by runspan: does its background work stall the app?

A FastAPI app under uvicorn (one worker, one process) serves ``prompt | a chat model that awaits
5 ms | parser | lambda`` (async endpoint) or the same chain synchronously in uvicorn's thread
pool (sync endpoint). A load generator in another process sends requests open-loop (on a fixed
schedule, whatever the answers) and measures each from its scheduled time. The variants run
interleaved, each in a fresh server, repeated; medians of each percentile are printed.

Inside the server a probe thread sleeps 1 ms at a time and notes how late it wakes: a wake-up
late by more than the sleep is time another thread held the interpreter (the GIL), which is
what stalls the event loop too. The longest such stretch, and how many of the slowest 1% of
requests overlapped a stretch over 2 ms, are printed beside the latencies.

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

VARIANTS = ("no tracing", "no-op handler", "runspan + SQLite", "runspan + SQLite + OTLP")

_SERVER = r"""
import asyncio, os, sys, threading, time
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

variant, port, database = sys.argv[1], int(sys.argv[2]), sys.argv[3]
otlp = sys.argv[4] if len(sys.argv) > 4 else ""


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
elif variant.startswith("runspan"):
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
app = FastAPI()
late: list[tuple[float, float]] = []  # (wake time, lateness in s) of the probe, when late


def probe() -> None:
    while True:
        asked = time.perf_counter()
        time.sleep(0.001)
        woke = time.perf_counter()
        over = woke - asked - 0.001
        if over > 0.0005:
            late.append((time.time() - (woke - asked), over))


@app.get("/async")
async def answer_async() -> dict[str, str]:
    return {"answer": await chain.ainvoke({"city": "Oslo"}, config=config)}


@app.get("/sync")
def answer_sync() -> dict[str, str]:
    return {"answer": chain.invoke({"city": "Oslo"}, config=config)}


@app.get("/stats")
def stats() -> dict[str, Any]:
    return {"cpu": time.process_time(), "late": late}


threading.Thread(target=probe, daemon=True).start()
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""

_LOAD = r"""
import asyncio, json, sys, time
import httpx

url, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])


async def main() -> None:
    results = []
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=500)) as client:
        start = time.time() + 0.2

        async def one(scheduled: float) -> None:
            await asyncio.sleep(max(0.0, scheduled - time.time()))
            await client.get(url)
            results.append((scheduled, time.time() - scheduled))

        count = int(rate * seconds)
        await asyncio.gather(*(one(start + i / rate) for i in range(count)))
    print(json.dumps(results))


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


def run_once(variant: str, endpoint: str, rate: float, seconds: float, sink: str) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="runspan-latency-")
    port = _free_port()
    args = [sys.executable, "-c", _SERVER, variant, str(port), f"sqlite:///{folder}/runs.db"]
    if variant.endswith("OTLP"):
        args.append(sink)
    server = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
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
        results = json.loads(load.stdout)
        after = _get(f"{base}/stats")
    finally:
        server.terminate()
        server.wait(30)
    latencies = sorted(latency for _, latency in results)
    stalls = [(start, over) for start, over in after["late"] if start > results[0][0] - 1]
    long_stalls = [(start, start + over) for start, over in stalls if over > 0.002]
    slowest = sorted(results, key=lambda item: item[1])[-max(1, len(results) // 100) :]
    overlapped = sum(
        any(s < scheduled + latency and e > scheduled for s, e in long_stalls)
        for scheduled, latency in slowest
    )

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "max": latencies[-1] * 1000,
        "cpu": (after["cpu"] - cpu_before) * 1000 / len(results),
        "stall": max((over for _, over in stalls), default=0.0) * 1000,
        "overlap": overlapped / len(slowest),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rates", default="100,200")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--endpoints", default="async,sync")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.seconds:.0f} s a run, {args.repeats} runs a variant")
    with otlp_sink.running() as sink:
        for endpoint in args.endpoints.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
                for _ in range(args.repeats):  # interleaved: each round runs every variant
                    for variant in VARIANTS:
                        runs[variant].append(run_once(variant, endpoint, rate, args.seconds, sink))
                print(f"\n{endpoint} endpoint, {rate:.0f} requests/s (ms; medians of runs)")
                print(
                    f"  {'variant':26s} {'p50':>6s} {'p95':>6s} {'p99':>6s} {'max':>6s}"
                    f" {'CPU/req':>8s} {'longest stall':>14s} {'slowest 1% in a stall':>22s}"
                )
                for variant, found in runs.items():
                    m = {key: statistics.median(run[key] for run in found) for key in found[0]}
                    print(
                        f"  {variant:26s} {m['p50']:6.1f} {m['p95']:6.1f} {m['p99']:6.1f}"
                        f" {m['max']:6.1f} {m['cpu']:8.2f} {m['stall']:14.1f}"
                        f" {m['overlap']:22.0%}"
                    )


if __name__ == "__main__":
    main()

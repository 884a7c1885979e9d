"""``runspan serve``: one process, a gRPC port and an HTTP port over one database.

The HTTP server (uvicorn) runs in a thread of its own and the gRPC server in its pool, so that
the main thread owns the signals: on SIGTERM or SIGINT both stop taking requests, finish the
ones in flight (each answered only once its spans are written), and the writer releases the
database. Nothing acknowledged is lost.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import uvicorn
from grpc import Server as GrpcServer
from sqlalchemy import URL

from runspan.logs import logger
from runspan.serve.auth import BearerToken, check_bind
from runspan.serve.grpc_api import grpc_server
from runspan.serve.http_api import http_app
from runspan.serve.ingest import DEFAULT_MAX_WAITING, Ingest
from runspan.serve.jaeger_api import DEFAULT_VALUE_CHARS, TraceChunks
from runspan.storage import RunStore, SqlSpanExporter
from runspan.storage.engine import (
    READ_DATABASE_URL_ENV,
    database_url_from,
    read_database_url_from,
    safe_url,
)

# How long requests in flight may take to finish once a stop is asked for.
STOP_GRACE_SECONDS = 10.0
# How often the main thread looks for a stop signal taken by another thread.
_SIGNAL_POLL_SECONDS = 0.2
# A stop step slower than this is logged with its time, to tell which one held the stop up.
_SLOW_STEP_SECONDS = 1.0
# A process still stopping after this long prints every thread's stack on stderr (a service
# manager kills it soon after: Kubernetes after 30 s, systemd after 90 s).
STUCK_STOP_SECONDS = 25.0


@dataclass(frozen=True)
class ServeSettings:
    """Where ``runspan serve`` listens, what it stores into, and who may use it."""

    database_url: str | None = None
    # What reads (Jaeger's API) connect as: else RUNSPAN_READ_DATABASE_URL, else database_url.
    read_database_url: str | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 4317
    http_port: int = 4318
    token: str | None = None
    insecure_bind: bool = False
    max_waiting: int = DEFAULT_MAX_WAITING
    value_chars: int = DEFAULT_VALUE_CHARS  # each value whole up to this, on the read APIs


@dataclass(frozen=True)
class Listening:
    """The addresses bound (a port of 0 asks the system for a free one)."""

    host: str
    grpc_port: int
    http_port: int
    database: str


def serve(
    settings: ServeSettings,
    *,
    ready: Callable[[Listening], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or ``stop``, when given), then stop gracefully."""
    check_bind(settings.host, settings.token, settings.insecure_bind)
    url = database_url_from(settings.database_url)
    writer = SqlSpanExporter(url)  # migrates now: a bad URL or a foreign file fails here
    ingest = Ingest(writer, max_waiting=settings.max_waiting)
    try:
        # Reads go through a store the database itself keeps read-only (see runspan.storage).
        store = RunStore(_read_url(settings.read_database_url, url))
    except BaseException:
        ingest.close()
        raise
    token = BearerToken(settings.token)
    traces = TraceChunks(store, settings.value_chars)
    try:
        grpc, grpc_port = grpc_server(
            ingest, token, f"{settings.host}:{settings.grpc_port}", traces=traces
        )
    except BaseException:
        ingest.close()
        store.close()
        raise
    http = uvicorn.Server(
        uvicorn.Config(
            http_app(ingest, token, traces),
            host=settings.host,
            port=settings.http_port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
    )
    http_thread = threading.Thread(target=http.run, name="runspan-serve-http", daemon=True)
    stopping = stop or threading.Event()
    # The handler runs in the main thread between two bytecodes, which may be inside
    # stopping.wait() with the event's lock held: Event.set() there would wait for that lock
    # forever. So it only records the signal, and the loop below looks for it.
    signalled: list[int] = []
    previous = _on_stop_signals(lambda: signalled.append(1)) if stop is None else {}
    try:
        grpc.start()
        http_thread.start()
        while not http.started:
            if not http_thread.is_alive():
                raise OSError(
                    f"runspan serve could not listen on {settings.host}:{settings.http_port} (HTTP)"
                )
            time.sleep(0.01)
        http_port = http.servers[0].sockets[0].getsockname()[1]
        listening = Listening(settings.host, grpc_port, http_port, safe_url(url))
        if ready is not None:
            ready(listening)
        # Woken now and then: a SIGTERM the kernel hands to another thread (gRPC's, uvicorn's)
        # runs its Python handler only when the main thread next runs bytecode, and a wait
        # without a timeout would never return for it.
        while not signalled and not stopping.wait(_SIGNAL_POLL_SECONDS):
            pass
    finally:
        if stop is None:  # the process is ours: a stop that hangs shows where, then exits
            faulthandler.dump_traceback_later(STUCK_STOP_SECONDS, exit=False, file=sys.stderr)
        _stop(http, http_thread, grpc, ingest, store)
        for number, handler in previous.items():
            signal.signal(number, handler)
        logger.info("runspan serve: stopped; every acknowledged span is written")


def _stop(
    http: uvicorn.Server,
    http_thread: threading.Thread,
    grpc: GrpcServer,
    ingest: Ingest,
    store: RunStore,
) -> None:
    """Stop taking requests, let those in flight finish (for the grace period at most), then
    write what is buffered. A step that takes long is logged, to tell which one held it up."""
    since = time.monotonic()

    def done(what: str) -> None:
        nonlocal since
        now = time.monotonic()
        if now - since > _SLOW_STEP_SECONDS:
            logger.warning("runspan serve: stopping %s took %.1f s", what, now - since)
        since = now

    http.should_exit = True
    stopped = grpc.stop(STOP_GRACE_SECONDS)
    http_thread.join(STOP_GRACE_SECONDS)
    done("the HTTP server")
    stopped.wait(STOP_GRACE_SECONDS)
    done("the gRPC server")
    ingest.close()
    done("the writer")
    store.close()
    done("the reads")


def _read_url(given: str | None, written: URL) -> URL:
    """What reads connect as: the given URL, else RUNSPAN_READ_DATABASE_URL (a role that can
    only read), else the database written to."""
    if given or os.environ.get(READ_DATABASE_URL_ENV, "").strip():
        return read_database_url_from(given)
    return written


_Handler = Callable[[int, FrameType | None], object] | int | None


def _on_stop_signals(handler: Callable[[], None]) -> dict[signal.Signals, _Handler]:
    previous: dict[signal.Signals, _Handler] = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        previous[number] = signal.signal(number, lambda *_: handler())
    return previous

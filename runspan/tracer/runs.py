"""The tracer's state: the runs that are open and the traces they belong to.

Everything here is released when its trace ends. A run leaves the live map when it ends, but its
span context stays with its trace, so that a child which starts after its parent ended (LangGraph
and async fan-outs do this) still links to it. When the root ends, the runs whose end may never
come (those started in a generator: a stream abandoned mid-way) are ended with it; the others
still report their own end (an async branch that outlives a failed sibling, say), and the trace
is released when the last of them ends, or when it expires.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from opentelemetry.context import Context
from opentelemetry.trace import Span

if TYPE_CHECKING:  # current.py imports this module
    from runspan.tracer.current import RunContext


@dataclass(slots=True, eq=False)
class RunTree:
    """The runs of one LangChain root: those still open, and the ids of those that ended."""

    root_id: UUID
    start_ns: int
    runs: dict[int, LiveRun] = field(default_factory=dict)
    ended_ids: list[int] = field(default_factory=list)
    span_ids: set[int] = field(default_factory=set)  # of every run so far: ids are never reused
    root_ended: bool = False  # then the trace is released when its last open run ends
    interrupted: bool = False  # a LangGraph interrupt() paused the graph
    thread_id: str | None = None  # the root's LangGraph thread, to link a resumption to it
    # The conversation and user of every run of the trace, unless a run's metadata names its own.
    session_id: str | None = None
    user_id: str | None = None
    # Attempts of each LangGraph task (by checkpoint namespace) that ran so far: RetryPolicy
    # runs a failed node again as a new run with the same task. Made at the first node run.
    attempts: dict[str, int] | None = None
    # A model was offered tools, or a tool ran: its graphs are agents (invoke_agent).
    agentic: bool = False


@dataclass(slots=True, eq=False)
class LiveRun:
    """A run whose span is open."""

    run_id: UUID
    run_id_text: str
    span: Span
    trace: RunTree
    start_ns: int
    operation: str | None = None  # the GenAI operation of a model run, None otherwise
    graph: bool = False  # a LangGraph graph: its nodes' runs are its children
    first_chunk_ns: int | None = None
    first_token_ns: int | None = None  # the first chunk with content: text or a tool call
    ended: bool = False
    # Started in a generator, which may be abandoned before the run's end is reported: such a
    # run is ended with its root. Any other run's end comes, so its trace waits for it.
    may_never_end: bool = False
    # id() of the frame that started the run; unique while the run is current, since that
    # frame is still executing then. Tells sibling roots of one batch from nested ones.
    caller_id: int = 0
    # Set when the run's span was made current: the context before, and the one attached.
    context_before: Context | None = None
    context_attached: RunContext | None = None


def _reset_lock(registry: weakref.ref[RunRegistry]) -> None:
    alive = registry()
    if alive is not None:
        alive._lock = threading.Lock()


class RunRegistry:
    """Thread-safe lookups of runs by id. Each call is O(1), apart from the runs it returns.

    Maps are keyed by ``UUID.int``: hashing an int is done in C, hashing a UUID in Python, and
    there are several lookups per callback.
    """

    def __init__(self, max_live_traces: int) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, LiveRun] = {}
        self._ended: dict[int, LiveRun] = {}  # ended runs of live traces, for late children
        self._traces: dict[int, RunTree] = {}  # by root id, oldest first
        self._max_live_traces = max_live_traces
        # LangGraph threads whose last invocation was interrupted: thread id -> trace id (hex),
        # so that the invocation that resumes it links to it. Oldest first, as many as traces.
        self._interrupted: dict[str, str] = {}
        if hasattr(os, "register_at_fork"):
            # A fork while another thread holds the lock would leave it held forever in the
            # child. The weak reference lets the registry go when its handler does.
            registry = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _reset_lock(registry))

    def sizes(self) -> dict[str, int]:
        """How much state is held: all zero once every trace has ended."""
        return {
            "live_runs": len(self._live),
            "ended_runs": len(self._ended),
            "traces": len(self._traces),
        }

    def get(self, run_id: UUID) -> LiveRun | None:
        return self._live.get(run_id.int)

    def parent(self, parent_run_id: UUID) -> LiveRun | None:
        """The parent run: live, or ended in a trace that is still live (check ``ended``)."""
        key = parent_run_id.int
        return self._live.get(key) or self._ended.get(key)

    def add(self, run: LiveRun) -> bool:
        """Register a started run; ``False`` if a run with its id is already live."""
        key = run.run_id.int
        with self._lock:
            if key in self._live:
                return False
            self._live[key] = run
            run.trace.runs[key] = run
            if run.trace.root_id.int == key:
                self._traces[key] = run.trace
            return True

    def remove(self, run_id: UUID) -> LiveRun | None:
        """Take an ending run out, keeping its span context while its trace lives; the last
        open run of a trace whose root has ended releases the trace."""
        key = run_id.int
        with self._lock:
            run = self._live.pop(key, None)
            if run is None:
                return None
            trace = run.trace
            trace.runs.pop(key, None)
            self._ended[key] = run
            trace.ended_ids.append(key)
            if trace.root_ended and not trace.runs:
                self._release(trace)
            return run

    def end_root(self, trace: RunTree, stacked: set[int]) -> list[LiveRun]:
        """The root of ``trace`` has ended: take out and return its open runs whose end may
        never come, or can no longer come (those in ``stacked``, current where the root
        ended); release the trace if no other run is open."""
        with self._lock:
            trace.root_ended = True
            abandoned = [
                run for key, run in trace.runs.items() if run.may_never_end or key in stacked
            ]
            for run in abandoned:
                key = run.run_id.int
                del trace.runs[key]
                self._live.pop(key, None)
                self._ended[key] = run
                trace.ended_ids.append(key)
            if not trace.runs:
                self._release(trace)
            return abandoned

    def close_trace(self, trace: RunTree) -> list[LiveRun]:
        """Forget a trace (expired); return its runs that are still open."""
        with self._lock:
            leftovers = list(trace.runs.values())
            trace.runs.clear()
            for run in leftovers:
                self._live.pop(run.run_id.int, None)
            self._release(trace)
            return leftovers

    def _release(self, trace: RunTree) -> None:
        """Forget a trace with no open run left (the lock is held)."""
        self._traces.pop(trace.root_id.int, None)
        for key in trace.ended_ids:
            self._ended.pop(key, None)
        trace.ended_ids.clear()

    def remember_interrupt(self, thread_id: str, trace_id: str) -> None:
        """The invocation of LangGraph thread ``thread_id`` in trace ``trace_id`` was
        interrupted; the next one on that thread resumes it."""
        with self._lock:
            self._interrupted.pop(thread_id, None)
            if len(self._interrupted) >= self._max_live_traces:
                del self._interrupted[next(iter(self._interrupted))]
            self._interrupted[thread_id] = trace_id

    def take_interrupt(self, thread_id: str) -> str | None:
        """The trace an invocation of ``thread_id`` resumes, if its last one was interrupted."""
        with self._lock:
            return self._interrupted.pop(thread_id, None)

    def expired_traces(self, now_ns: int, max_age_ns: int) -> list[RunTree]:
        """Traces older than ``max_age_ns``, and the oldest beyond the live-trace limit."""
        expired: list[RunTree] = []
        with self._lock:
            while self._traces:
                oldest = next(iter(self._traces.values()))
                # Called before a new root is added, so leave room for it.
                too_many = len(self._traces) >= self._max_live_traces
                if not too_many and now_ns - oldest.start_ns <= max_age_ns:
                    break
                del self._traces[oldest.root_id.int]
                expired.append(oldest)
        return expired

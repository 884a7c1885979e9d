"""Calls between services (Jaeger's dependencies): counted from the runs whose parent is another
service's span, and only from those."""

from __future__ import annotations

import time

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.storage.conftest import Stored


def _steps(name: str) -> Runnable[int, int]:
    """A run with children of its own: runs recorded with their parent run."""
    first: Runnable[int, int] = RunnableLambda(lambda x: x + 1, name=f"{name} step")
    return first | RunnableLambda(lambda x: x * 2, name=f"{name} last")


def test_calls_come_from_roots_and_orphans_under_another_services_span(stored: Stored) -> None:
    """Under a gateway's span (another tracer provider, another service, the same database):
    a chain traced from its root, and a chain whose handler was given to an inner runnable only
    (an orphan: LangChain names a parent run the handler never saw). Each is one call from the
    gateway; their own children, recorded with their parent runs, are not calls."""
    gateway = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    gateway.add_span_processor(stored.processor)  # the same writer: flushed by stored.store()
    traced = _steps("root").with_config(callbacks=[stored.handler])
    inner = _steps("orphan")

    def untraced(x: int, config: RunnableConfig) -> int:
        # The handler joins the callbacks of the inner runs only, under a run it never sees.
        manager = config["callbacks"]
        assert isinstance(manager, BaseCallbackManager)
        manager.add_handler(stored.handler, inherit=True)
        return inner.invoke(x, config)

    untraced_outer = RunnableLambda(untraced, name="untraced outer")
    tracer = gateway.get_tracer("gateway")
    with tracer.start_as_current_span("handle request"):
        traced.invoke(1)
    with tracer.start_as_current_span("handle request"):
        untraced_outer.invoke(1)
    with stored.store() as store:
        now = time.time_ns()
        orphans = store.sql(
            "SELECT count(*) FROM runs WHERE parent_run_id IS NOT NULL"
            " AND parent_span_id IS NOT NULL AND service_name = 'test-app'"
            " AND parent_span_id IN (SELECT span_id FROM runs WHERE service_name = 'gateway')"
        ).rows[0][0]
        assert orphans == 1  # what the case is about: a parent run named, another's span
        assert store.dependencies(now - 60 * 10**9, now) == [("gateway", "test-app", 2)]
        assert store.dependencies() == [("gateway", "test-app", 2)]

"""What LangGraph's runs say beyond LangChain's: the node, retries, resumed threads, and
which graphs are agents.

LangGraph puts a node's name and task (``langgraph_node``, ``langgraph_checkpoint_ns``) in the
metadata of every run of that node, and a thread's id (``thread_id``) in the metadata of every
run of an invocation. runspan reads them by name; it does not import LangGraph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from runspan.attributes import AGENT_NAME, ATTEMPT, OPERATION, RESUMES_TRACE, TASK_KEY, THREAD_KEY
from runspan.tracer.runs import RunRegistry, RunTree


def note_thread(
    tree: RunTree,
    metadata: Mapping[str, Any] | None,
    inputs: Any,
    registry: RunRegistry,
    attributes: dict[str, AttributeValue],
) -> None:
    """For a root: remember its thread, and link an invocation that resumes an interrupted
    one (``Command(resume=...)``, matched by shape) to the trace it continues."""
    thread = metadata.get(THREAD_KEY) if metadata else None
    if not isinstance(thread, str):
        return
    tree.thread_id = thread
    if getattr(inputs, "resume", None) is not None:
        resumed = registry.take_interrupt(thread)
        if resumed is not None:
            attributes[RESUMES_TRACE] = resumed


def note_attempt(
    tree: RunTree, metadata: Mapping[str, Any], attributes: dict[str, AttributeValue]
) -> None:
    """For a node's own run: which attempt of its task it is. RetryPolicy runs a failed node
    again as a new run of the same task (checkpoint namespace); attempts 2 and up say so."""
    task = metadata.get(TASK_KEY)
    if not isinstance(task, str):
        return
    if tree.attempts is None:
        tree.attempts = {}
    attempt = tree.attempts.get(task, 0) + 1
    tree.attempts[task] = attempt
    if attempt > 1:
        attributes[ATTEMPT] = attempt


INVOKE_AGENT = "invoke_agent"
INVOKE_WORKFLOW = "invoke_workflow"


def graph_operation(span: Any, tree: RunTree) -> dict[str, AttributeValue]:
    """A graph's GenAI operation, known at its end: an agent (``invoke_agent``, named by the
    graph's run name) when a model in its trace was offered tools or a tool ran, as in a
    ReAct agent; any other graph is a workflow (``invoke_workflow``)."""
    if not tree.agentic:
        return {OPERATION: INVOKE_WORKFLOW}
    name = getattr(span, "name", None)
    attributes: dict[str, AttributeValue] = {OPERATION: INVOKE_AGENT}
    if isinstance(name, str) and name:
        attributes[AGENT_NAME] = name
    return attributes

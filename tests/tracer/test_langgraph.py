"""LangGraph graphs: nodes nest under the graph; interrupts are events, not errors."""

from __future__ import annotations

from typing import TypedDict

from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from opentelemetry.trace import StatusCode

from runspan.testing import SpanCapture
from tests.support import assert_matches_langchain


class State(TypedDict):
    n: int
    route: str


def think(state: State) -> dict[str, object]:
    return {"n": state["n"] + 1}


def shout(state: State) -> dict[str, object]:
    return {"route": "shout"}


def whisper(state: State) -> dict[str, object]:
    return {"route": "whisper"}


def pick(state: State) -> str:
    return "shout" if state["n"] > 1 else "whisper"


def two_node_graph() -> object:
    graph = StateGraph(State)
    graph.add_node("think", think)
    graph.add_node("shout", shout)
    graph.add_node("whisper", whisper)
    graph.add_edge(START, "think")
    graph.add_conditional_edges("think", pick, ["shout", "whisper"])
    graph.add_edge("shout", END)
    graph.add_edge("whisper", END)
    return graph.compile()


def ask(state: State) -> dict[str, object]:
    answer = interrupt("approve?")
    return {"route": str(answer)}


class TestGraphs:
    def test_two_nodes_with_a_conditional_edge(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """The graph is the root; the nodes that ran nest under it, with LangChain's tree."""
        graph = two_node_graph()
        out = graph.invoke(
            {"n": 1, "route": ""},  # type: ignore[attr-defined]
            config={"callbacks": [capture.handler, collector]},
        )
        assert out["route"] == "shout"
        assert_matches_langchain(capture, collector)
        [root] = capture.tree()
        assert root.name == "LangGraph"
        assert [c.name for c in root.children] == ["think", "shout"]
        think_span = root.children[0].span
        assert '"langgraph_node":"think"' in str(
            (think_span.attributes or {})["langchain.metadata"]
        )
        assert capture.handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}

    def test_interrupt_is_an_event_not_an_error(
        self, capture: SpanCapture, collector: RunCollectorCallbackHandler
    ) -> None:
        """A node that interrupts is not failed: it carries a control-flow event, and the
        resumed run completes."""
        graph = StateGraph(State)
        graph.add_node("ask", ask)
        graph.add_edge(START, "ask")
        graph.add_edge("ask", END)
        app = graph.compile(checkpointer=InMemorySaver())
        config = {"callbacks": [capture.handler, collector], "configurable": {"thread_id": "t1"}}
        first = app.invoke({"n": 0, "route": ""}, config=config)  # type: ignore[arg-type]
        assert "__interrupt__" in first
        assert_matches_langchain(capture, collector)
        assert not [s for s in capture.spans if s.status.status_code is StatusCode.ERROR]
        ask_span = capture.span("ask")
        events = [e.name for e in ask_span.events]
        assert events == ["langgraph.control_flow"]
        capture.clear()
        config["callbacks"] = [capture.handler]
        resumed = app.invoke(Command(resume="yes"), config=config)  # type: ignore[arg-type]
        assert resumed["route"] == "yes"
        assert not [s for s in capture.spans if s.status.status_code is StatusCode.ERROR]
        assert capture.handler.state_sizes() == {"live_runs": 0, "ended_runs": 0, "traces": 0}

"""Helpers for testing code that runspan traces.

    from runspan.testing import capture_spans

    def test_my_chain():
        with capture_spans() as capture:
            my_chain.invoke({"q": "hi"}, config={"callbacks": [capture.handler]})
        assert capture.names() == ["RunnableSequence", "ChatPromptTemplate", "chat my-model"]
        print(capture.render())

The spans go through a real SDK provider (with runspan's id generator, as
``runspan.configure()`` builds it) into OpenTelemetry's in-memory exporter, synchronously, so they
are all there when the chain returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runspan.tracer.handler import TracingCallbackHandler
from runspan.tracer.ids import RunIdGenerator

__all__ = ["SpanCapture", "SpanNode", "capture_spans", "render_tree", "span_tree"]


@dataclass
class SpanNode:
    """A span and the spans whose parent it is, in start order."""

    span: ReadableSpan
    children: list[SpanNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.span.name

    def walk(self) -> Iterator[SpanNode]:
        yield self
        for child in self.children:
            yield from child.walk()


def span_tree(spans: Sequence[ReadableSpan]) -> list[SpanNode]:
    """The spans as trees: a span whose parent is not among them is a root."""
    ordered = sorted(spans, key=lambda s: s.start_time or 0)
    nodes = {s.context.span_id: SpanNode(s) for s in ordered if s.context is not None}
    roots: list[SpanNode] = []
    for span in ordered:
        if span.context is None:
            continue
        node = nodes[span.context.span_id]
        parent = nodes.get(span.parent.span_id) if span.parent is not None else None
        (parent.children if parent is not None else roots).append(node)
    return roots


def render_tree(roots: Sequence[SpanNode]) -> str:
    """Indented span names, one per line, for assertions and for reading."""
    lines: list[str] = []

    def add(node: SpanNode, depth: int) -> None:
        lines.append("  " * depth + node.name)
        for child in node.children:
            add(child, depth + 1)

    for root in roots:
        add(root, 0)
    return "\n".join(lines)


class SpanCapture:
    """A handler wired to an in-memory exporter, and ways to look at what it recorded."""

    def __init__(self, service_name: str = "runspan-test", **handler_settings: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name}),
            id_generator=RunIdGenerator(),
            shutdown_on_exit=False,
        )
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.handler = TracingCallbackHandler(self.provider, **handler_settings)

    @property
    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def names(self) -> list[str]:
        """Span names in start order."""
        return [s.name for s in sorted(self.spans, key=lambda s: s.start_time or 0)]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name``."""
        found = [s for s in self.spans if s.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one span named {name!r}, found {len(found)}")
        return found[0]

    def tree(self) -> list[SpanNode]:
        return span_tree(self.spans)

    def render(self) -> str:
        return render_tree(self.tree())

    def clear(self) -> None:
        self.exporter.clear()


@contextmanager
def capture_spans(**handler_settings: Any) -> Iterator[SpanCapture]:
    """A :class:`SpanCapture` for the block; its provider is shut down after it."""
    capture = SpanCapture(**handler_settings)
    try:
        yield capture
    finally:
        capture.provider.shutdown()

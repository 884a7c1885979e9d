"""Span trees for people: a rich tree with durations, status, models and tokens."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import StatusCode
from rich.text import Text
from rich.tree import Tree

from runspan.testing import SpanNode

_BAR_WIDTH = 20


def _duration_ms(node: SpanNode) -> float:
    span = node.span
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e6


def _status(node: SpanNode) -> Text:
    attributes = node.span.attributes or {}
    if attributes.get("runspan.unfinished"):
        return Text("unfinished", style="yellow")
    if node.span.status.status_code is StatusCode.ERROR:
        return Text("error", style="bold red")
    return Text("ok", style="green")


def _label(node: SpanNode, total_ms: float) -> Text:
    attributes = node.span.attributes or {}
    duration = _duration_ms(node)
    filled = round(_BAR_WIDTH * duration / total_ms) if total_ms > 0 else 0
    label = Text()
    label.append(node.name, style="bold")
    label.append("  ")
    label.append("█" * max(filled, 1), style="cyan")
    label.append(f" {duration:.2f} ms  ")
    label.append_text(_status(node))
    tokens_in = attributes.get("gen_ai.usage.input_tokens")
    tokens_out = attributes.get("gen_ai.usage.output_tokens")
    if tokens_in is not None or tokens_out is not None:
        label.append(
            f"  tokens {tokens_in if tokens_in is not None else '?'}"
            f"→{tokens_out if tokens_out is not None else '?'}",
            style="magenta",
        )
    ttfc = attributes.get("gen_ai.response.time_to_first_chunk")
    if isinstance(ttfc, float):
        label.append(f"  first chunk {ttfc * 1000:.2f} ms", style="dim")
    error = attributes.get("error.type")
    if error:
        label.append(f"  {error}", style="red")
    return label


def span_tree_view(roots: Sequence[SpanNode], title: str = "trace") -> Tree:
    """One rich tree for the given roots, bars scaled to the longest root."""
    total = max((_duration_ms(root) for root in roots), default=0.0)
    view = Tree(Text(title, style="bold underline"))

    def add(branch: Tree, node: SpanNode) -> None:
        child = branch.add(_label(node, total))
        for grandchild in node.children:
            add(child, grandchild)

    for root in roots:
        add(view, root)
    return view

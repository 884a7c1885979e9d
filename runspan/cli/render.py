"""Stored runs for people: trees with waterfall bars, and tables."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.padding import Padding
from rich.text import Text
from rich.tree import Tree

from runspan.cli.content import run_details
from runspan.storage import Run, Session, Stat, Trace

_BAR_WIDTH = 24
STATUS_STYLES = {
    "ok": "green",
    "error": "bold red",
    "running": "bold yellow",
    "unfinished": "yellow",
    "interrupted": "bold magenta",
    "retried": "red",
}


def status_text(run: Run) -> Text:
    """The run's status, with why it did not finish where it did not."""
    status = run.status
    if status == "unfinished" and run.unfinished_reason:
        status = f"unfinished ({run.unfinished_reason})"
    return Text(status, style=STATUS_STYLES.get(run.status, ""))


def duration_text(duration_ms: float | None) -> str:
    if duration_ms is None:
        return "—"
    if duration_ms >= 1000:
        return f"{duration_ms / 1000:.2f} s"
    return f"{duration_ms:.2f} ms"


def tokens_text(run: Run | Stat | Trace | Session) -> str:
    if run.input_tokens is None and run.output_tokens is None:
        return ""
    shown = [str(n) if n is not None else "?" for n in (run.input_tokens, run.output_tokens)]
    return "→".join(shown)


def cost_text(cost: float | None) -> str:
    return "" if cost is None else f"${cost:.6f}"


def _bar(run: Run, origin_ns: int, span_ns: int) -> Text:
    """Where the run sits in its tree's time: offset, then length, on a fixed width."""
    if span_ns <= 0:
        return Text("█", style="cyan")
    offset = round(_BAR_WIDTH * (run.start_ns - origin_ns) / span_ns)
    end = run.end_ns if run.end_ns is not None else origin_ns + span_ns
    length = max(1, round(_BAR_WIDTH * (end - run.start_ns) / span_ns))
    offset = min(offset, _BAR_WIDTH - 1)
    length = min(length, _BAR_WIDTH - offset)
    bar = Text("·" * offset, style="dim")
    bar.append("█" * length, style="cyan" if run.status != "error" else "red")
    bar.append("·" * (_BAR_WIDTH - offset - length), style="dim")
    return bar


def _label(run: Run, origin_ns: int, span_ns: int) -> Text:
    label = Text()
    label.append_text(_bar(run, origin_ns, span_ns))
    label.append(" ")
    label.append(run.name, style="bold")
    if run.run_type:
        label.append(f" {run.run_type}", style="dim")
    label.append(f"  {duration_text(run.duration_ms)}  ")
    label.append_text(status_text(run))
    if run.attempt is not None:
        label.append(f"  attempt {run.attempt}", style="yellow")
    if run.resumes_trace_id:
        label.append(f"  resumes trace {run.resumes_trace_id}", style="magenta")
    if run.model_name:
        label.append(f"  {run.model_name}", style="blue")
    tokens = tokens_text(run)
    if tokens:
        label.append(f"  tokens {tokens}", style="magenta")
    if run.ttft_ms is not None:
        label.append(f"  first token {run.ttft_ms:.2f} ms", style="dim")
    if run.cost_usd is not None:
        label.append(f"  {cost_text(run.cost_usd)}", style="green")
    if run.status == "error" and run.error_type:
        label.append(f"  {run.error_type}", style="red")  # its message goes under the run
    return label


def run_tree_view(
    roots: Sequence[Run], title: str, *, content: bool = False, full: bool = False
) -> Tree:
    """The runs under ``roots`` as one tree, bars on the time scale of all of them; with
    ``content``, what each run said under it (``full``: unfolded, with stack traces)."""
    view = Tree(Text(title, style="bold underline"))
    if not roots:
        return view
    everything = [run for root in roots for run in root.walk()]
    origin = min(run.start_ns for run in everything)
    ends = [run.end_ns for run in everything if run.end_ns is not None]
    finish = max([*ends, max(run.start_ns for run in everything)])

    def add(branch: Tree, run: Run) -> None:
        label = _label(run, origin, finish - origin)
        details = run_details(run, full=full) if content else []
        child = branch.add(Group(label, *(Padding(line, (0, 0, 0, 2)) for line in details)))
        for grandchild in run.children:
            add(child, grandchild)

    for root in roots:
        add(view, root)
    return view


def name_text(run: Run) -> Text:
    """The name, and the LangGraph node it ran in where that is not the name: what tells
    apart, in a flat list, runs LangChain names alike (subgraphs, conditional edges)."""
    name = Text(run.name)
    if run.langgraph_node and run.langgraph_node != run.name:
        name.append(f" · {run.langgraph_node}", style="dim")
    return name


def _shared_length(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def short_ids(ids: Sequence[str], least: int = 8) -> dict[str, str]:
    """Each id cut to its shortest prefix (``least`` characters or more) that no other of
    ``ids`` starts with, as git shows commits; every command takes such a prefix."""
    ordered = sorted(set(ids))
    short: dict[str, str] = {}
    for index, full in enumerate(ordered):
        neighbours = ordered[max(index - 1, 0) : index] + ordered[index + 1 : index + 2]
        shared = max((_shared_length(full, other) for other in neighbours), default=0)
        short[full] = full[: max(least, shared + 1)]
    return short

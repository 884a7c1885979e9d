"""runspan.testing, the helpers users test their own chains with."""

from __future__ import annotations

import pytest
from langchain_core.runnables import RunnableLambda

from runspan.testing import capture_spans, render_tree, span_tree


class TestCaptureSpans:
    def test_records_and_shows_the_tree(self) -> None:
        """capture_spans gives every span of the block, by name and as an indented tree."""
        chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
        with capture_spans() as capture:
            assert chain.invoke(1, config={"callbacks": [capture.handler]}) == 4
            assert capture.names() == ["RunnableSequence", "RunnableLambda", "RunnableLambda"]
            assert capture.render() == "RunnableSequence\n  RunnableLambda\n  RunnableLambda"
            assert render_tree(span_tree(capture.spans)) == capture.render()
            [root] = capture.tree()
            assert [node.name for node in root.walk()] == capture.names()

    def test_span_by_name_says_what_it_found(self) -> None:
        """span(name) fails clearly when there is not exactly one such span."""
        with capture_spans() as capture:
            RunnableLambda(lambda x: x).invoke(1, config={"callbacks": [capture.handler]})
            with pytest.raises(LookupError, match="found 0"):
                capture.span("missing")
            capture.clear()
            assert capture.spans == []

    def test_settings_pass_to_the_handler(self) -> None:
        """Handler settings given to capture_spans apply."""
        with capture_spans(capture_content=False) as capture:
            RunnableLambda(lambda x: x).invoke("secret", config={"callbacks": [capture.handler]})
            assert "input.value" not in (capture.span("RunnableLambda").attributes or {})

"""The runspan command."""

from __future__ import annotations

import json

from click.testing import CliRunner

from runspan.cli import main


class TestDemo:
    def test_prints_the_span_tree(self) -> None:
        """runspan demo runs the chain offline and draws its spans with tokens and status."""
        result = CliRunner().invoke(main, ["demo"])
        assert result.exit_code == 0, result.output
        out = result.output
        assert "Pack a light raincoat" in out
        assert "22 spans in 2 traces" in out
        for name in (
            "travel_assistant",
            "execute_tool weather_forecast",
            "TravelGuideRetriever",
            "chat demo-gpt",
            "StrOutputParser",
        ):
            assert name in out
        assert "tokens 64→12" in out
        assert "first chunk" in out  # the streamed call
        assert "error" not in out

    def test_json_for_scripts(self) -> None:
        """--json prints the trees as JSON with ids, status and attributes."""
        result = CliRunner().invoke(main, ["demo", "--json"])
        assert result.exit_code == 0, result.output
        roots = json.loads(result.output)
        assert [r["name"] for r in roots] == ["travel_assistant", "travel_assistant"]
        invoke = roots[0]
        assert invoke["status"] == "UNSET"
        assert int(invoke["trace_id"], 16) > 0
        model = next(c for c in invoke["children"] if c["name"] == "chat demo-gpt")
        assert model["kind"] == "CLIENT"
        assert model["attributes"]["gen_ai.usage.input_tokens"] == 64
        assert model["attributes"]["gen_ai.usage.output_tokens"] == 12
        assert model["attributes"]["gen_ai.request.model"] == "demo-gpt"

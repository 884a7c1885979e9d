"""OTLP settings from arguments and the standard variables, checked when configure() runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import runspan
from runspan.cli import main
from runspan.exporters import OtlpSettings, jaeger_trace_url
from runspan.exporters.jaeger import jaeger_base_url
from tests.exporters.conftest import Receiver


class TestFromEnvironment:
    def test_nothing_set_means_no_otlp_export(self) -> None:
        assert OtlpSettings.build(environ={}) is None

    def test_the_issue_example_grpc_on_4317(self) -> None:
        """OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 is Jaeger's gRPC port."""
        settings = OtlpSettings.build(
            environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317"}
        )
        assert settings is not None
        assert (settings.protocol, settings.endpoint) == ("grpc", "http://localhost:4317")

    def test_a_general_http_endpoint_gets_the_traces_path(self) -> None:
        settings = OtlpSettings.build(
            environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318/otlp/"}
        )
        assert settings is not None
        assert settings.protocol == "http/protobuf"
        assert settings.endpoint == "https://collector.example:4318/otlp/v1/traces"

    def test_the_traces_variables_win_and_are_used_as_they_are(self) -> None:
        settings = OtlpSettings.build(
            environ={
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/custom",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_HEADERS": "a=1",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2",
            }
        )
        assert settings is not None
        assert settings.endpoint == "http://traces:9999/custom"
        assert settings.protocol == "http/protobuf"
        assert settings.headers == (("b", "2"),)

    def test_otel_traces_exporter_otlp_means_the_default_endpoint(self) -> None:
        settings = OtlpSettings.build(environ={"OTEL_TRACES_EXPORTER": "otlp"})
        assert settings is not None
        assert settings.endpoint == "http://localhost:4317"

    def test_arguments_win_over_the_environment(self) -> None:
        settings = OtlpSettings.build(
            "http://arg:4318",
            headers={"X-Key": "v"},
            preview_chars=100,
            environ={
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-key=env",
                "RUNSPAN_OTLP_PREVIEW_CHARS": "5000",
            },
        )
        assert settings is not None
        assert settings.endpoint == "http://arg:4318/v1/traces"
        assert settings.headers == (("x-key", "v"),)
        assert settings.preview_chars == 100


class TestBadValues:
    @pytest.mark.parametrize(
        ("environ", "named"),
        [
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://x"}, "TRACES_ENDPOINT"),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:port"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json is not supported"),
            ({"OTEL_EXPORTER_OTLP_INSECURE": "maybe"}, "OTEL_EXPORTER_OTLP_INSECURE"),
            ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/no/such.pem"}, "no such file"),
            ({"RUNSPAN_OTLP_PREVIEW_CHARS": "ten"}, "RUNSPAN_OTLP_PREVIEW_CHARS"),
        ],
    )
    def test_each_names_the_setting(self, environ: dict[str, str], named: str) -> None:
        environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317", **environ}
        with pytest.raises(ValueError, match=r"use|no such file") as raised:
            OtlpSettings.build(environ=environ)
        assert named in str(raised.value)

    def test_a_malformed_header_never_repeats_its_value(self) -> None:
        with pytest.raises(ValueError, match="entry 2 is not key=value") as raised:
            OtlpSettings.build(
                environ={
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317",
                    "OTEL_EXPORTER_OTLP_HEADERS": "tenant=acme,sk-live-SECRET",
                }
            )
        assert "SECRET" not in str(raised.value)

    def test_a_password_in_the_endpoint_is_never_shown(self) -> None:
        with pytest.raises(ValueError, match="not an http") as raised:
            OtlpSettings.build("ftp://user:hunter2@collector:4317")
        assert "hunter2" not in str(raised.value)
        settings = OtlpSettings.build("https://user:hunter2@collector:4317")
        assert settings is not None
        assert "hunter2" not in settings.display_endpoint
        assert "hunter2" not in repr(settings)

    def test_configure_raises_before_anything_runs(self, fresh_globals: None) -> None:
        """A bad OTLP argument fails configure() itself, with no provider installed."""
        with pytest.raises(ValueError, match="otlp_protocol='udp'"):
            runspan.configure(otlp_endpoint="http://localhost:4317", otlp_protocol="udp")
        assert runspan.configured_provider() is None


class TestJaegerLinks:
    def test_default_and_environment(self) -> None:
        assert jaeger_base_url(environ={}) == "http://localhost:16686"
        base = jaeger_base_url(environ={"RUNSPAN_JAEGER_URL": "https://jaeger.corp/"})
        assert jaeger_trace_url("ab" * 16, base) == f"https://jaeger.corp/trace/{'ab' * 16}"
        with pytest.raises(ValueError, match="RUNSPAN_JAEGER_URL"):
            jaeger_base_url(environ={"RUNSPAN_JAEGER_URL": "jaeger:16686"})

    def test_show_and_runs_print_the_trace_link(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        runner = CliRunner()
        env = {"COLUMNS": "200", "RUNSPAN_JAEGER_URL": "http://jaeger.local:16686"}
        demo = runner.invoke(main, ["demo", "--database-url", url, "--json"], env=env)
        assert demo.exit_code == 0, demo.output
        assert "jaeger_url" not in demo.output  # nothing was exported, so no link
        runs = runner.invoke(main, ["runs", "--roots", "--database-url", url], env=env)
        assert runs.exit_code == 0, runs.output
        assert "Jaeger: http://jaeger.local:16686/trace/" in runs.output
        trace = runs.output.split("/trace/")[1][:32]
        show = runner.invoke(main, ["show", trace, "--database-url", url], env=env)
        assert f"Jaeger: http://jaeger.local:16686/trace/{trace}" in show.output

    def test_no_link_without_runspan_jaeger_url(self, tmp_path: Path) -> None:
        """Without RUNSPAN_JAEGER_URL there may be no Jaeger: runs and show print no link, and
        their JSON says null."""
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        env = {k: v for k, v in os.environ.items() if k != "RUNSPAN_JAEGER_URL"}
        demo = _cli(["demo", "--database-url", url, "--json"], env)
        assert demo.returncode == 0, demo.stderr
        runs = _cli(["runs", "--roots", "--database-url", url], env)
        assert runs.returncode == 0, runs.stderr
        assert "Jaeger" not in runs.stdout
        listed = _cli(["runs", "--roots", "--json", "--database-url", url], env)
        rows = json.loads(listed.stdout)
        assert rows
        assert {row["jaeger_url"] for row in rows} == {None}
        show = _cli(["show", rows[0]["trace_id"], "--database-url", url], env)
        assert show.returncode == 0, show.stderr
        assert "Jaeger" not in show.stdout


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The runspan command in a subprocess, as a user runs it."""
    command = [str(Path(sys.executable).parent / "runspan"), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


class TestDemo:
    def test_demo_exports_and_prints_the_jaeger_link(
        self, receiver: Receiver, tmp_path: Path
    ) -> None:
        """`runspan demo --otlp-endpoint URL` stores, exports, and links each trace."""
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        env = {"COLUMNS": "200", "OTEL_EXPORTER_OTLP_PROTOCOL": receiver.protocol}
        result = CliRunner().invoke(
            main,
            ["demo", "--database-url", url, "--otlp-endpoint", receiver.endpoint],
            env=env,
        )
        assert result.exit_code == 0, result.output
        traces = {span.trace_id for span in receiver.received.spans}
        assert len(traces) == 2  # invoke and stream
        for trace in traces:
            assert f"Jaeger: http://localhost:16686/trace/{trace}" in result.output
        assert f"sent to {receiver.endpoint}" in result.output
        names = {span.name for span in receiver.received.spans}
        assert {"travel_assistant", "chat demo-gpt", "execute_tool weather_forecast"} <= names
        assert {span.service_name for span in receiver.received.spans} == {"runspan-demo"}

    def test_demo_reads_the_endpoint_from_the_environment(
        self, receiver: Receiver, tmp_path: Path
    ) -> None:
        env = {
            "COLUMNS": "200",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": receiver.protocol,
        }
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        result = CliRunner().invoke(main, ["demo", "--database-url", url, "--json"], env=env)
        assert result.exit_code == 0, result.output
        assert receiver.received.spans
        assert '"jaeger_url": "http://localhost:16686/trace/' in result.output

"""Every malformed setting is one clear error from configure(), naming the setting and what it
accepts; never an error from a chain call; never a database password in the message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import TracerProvider

import runspan
from runspan.cli import main

PASSWORD = "pw-Zq81x"

BAD_ENVIRONMENT = [
    ("RUNSPAN_DATABASE_URL", "not a url", "RUNSPAN_DATABASE_URL"),
    ("RUNSPAN_DATABASE_URL", f"mysql://app:{PASSWORD}@db/runs", "SQLite or PostgreSQL"),
    ("RUNSPAN_DATABASE_URL", "sqlite:////no/such/folder/runs.db", "does not exist"),
    ("RUNSPAN_DATABASE_URL", f"postgresql+asyncpg://app:{PASSWORD}@db/runs", "psycopg"),
    ("RUNSPAN_MAX_VALUE_CHARS", "ten", "RUNSPAN_MAX_VALUE_CHARS"),
    ("RUNSPAN_MAX_VALUE_CHARS", "10", "at least 64"),
    ("RUNSPAN_MAX_RUN_AGE_SECONDS", "soon", "RUNSPAN_MAX_RUN_AGE_SECONDS"),
    ("RUNSPAN_MAX_RUN_AGE_SECONDS", "-1", "positive"),
    ("RUNSPAN_OTLP_PREVIEW_CHARS", "lots", "RUNSPAN_OTLP_PREVIEW_CHARS"),
    ("RUNSPAN_MAX_QUEUE_BYTES", "64MiB", "RUNSPAN_MAX_QUEUE_BYTES"),
    ("RUNSPAN_MAX_QUEUE_BYTES", "1000", "at least 1,048,576"),
    ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe", "true or false"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector", "TRACES_ENDPOINT"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ("OTEL_EXPORTER_OTLP_HEADERS", f"api-key{PASSWORD}", "OTEL_EXPORTER_OTLP_HEADERS"),
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
    ("OTEL_EXPORTER_OTLP_INSECURE", "maybe", "OTEL_EXPORTER_OTLP_INSECURE"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zip", "gzip"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "OTEL_BSP_MAX_QUEUE_SIZE"),
    ("OTEL_BSP_SCHEDULE_DELAY", "-5", "OTEL_BSP_SCHEDULE_DELAY"),
    ("OTEL_RESOURCE_ATTRIBUTES", "team", "OTEL_RESOURCE_ATTRIBUTES"),
    ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER"),
]

BAD_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"service_name": ""}, "service_name"),
    ({"service_name": 5}, "service_name"),
    ({"capture_content": "no"}, "capture_content"),
    ({"max_value_chars": 10}, "max_value_chars"),
    ({"redact": "***"}, "redact"),
    ({"separate_trace": "yes"}, "separate_trace"),
    ({"max_run_age_seconds": "1h"}, "max_run_age_seconds"),
    ({"database_url": 5}, "database_url"),
    ({"database_url": f"oracle://app:{PASSWORD}@db/runs"}, "database_url"),
    ({"storage": "yes"}, "storage"),
    ({"span_processors": [object()]}, "span_processors"),
    ({"otlp_endpoint": "jaeger:4317"}, "otlp_endpoint"),
    ({"otlp_endpoint": f"https://app:{PASSWORD}@:4317"}, "otlp_endpoint"),
    ({"otlp_endpoint": "http://jaeger:4317", "otlp_protocol": "udp"}, "otlp_protocol"),
    ({"otlp_endpoint": "http://jaeger:4317", "otlp_headers": 5}, "otlp_headers"),
    ({"otlp_endpoint": "http://jaeger:4317", "otlp_headers": "novalue"}, "otlp_headers"),
    ({"otlp_endpoint": "http://jaeger:4317", "otlp_timeout": 0}, "otlp_timeout"),
    ({"otlp_endpoint": "http://jaeger:4317", "otlp_insecure": "x"}, "otlp_insecure"),
    ({"otlp_endpoint": "http://jaeger:4317", "otlp_preview_chars": 8}, "otlp_preview_chars"),
    ({"otlp_endpoint": "http://jaeger:4317", "otlp_certificate": "/no/ca.pem"}, "otlp_certificate"),
    ({"set_global": "no"}, "set_global"),
    ({"max_queue_bytes": 1000}, "max_queue_bytes"),
    ({"max_queue_bytes": "64MiB"}, "max_queue_bytes"),
]


def _refused(named: str, error: BaseException) -> None:
    message = str(error)
    assert named in message, message
    assert PASSWORD not in message
    assert "\n" not in message.strip(), "one line"
    assert runspan.configured_provider() is None


@pytest.mark.parametrize(("variable", "value", "named"), BAD_ENVIRONMENT)
def test_a_bad_variable_fails_configure_by_name(
    variable: str,
    value: str,
    named: str,
    fresh_globals: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if variable.startswith("OTEL_EXPORTER_OTLP_") and "ENDPOINT" not in variable:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as raised:  # noqa: PT011 - the message is checked below
        runspan.configure(set_global=False)
    _refused(named, raised.value)


@pytest.mark.parametrize(("arguments", "named"), BAD_ARGUMENTS)
def test_a_bad_argument_fails_configure_by_name(
    arguments: dict[str, Any], named: str, fresh_globals: None
) -> None:
    with pytest.raises(ValueError) as raised:  # noqa: PT011 - the message is checked below
        runspan.configure(**{"set_global": False, **arguments})
    _refused(named, raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RUNSPAN_MAX_VALUE_CHARS", "ten"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe"),
        ("RUNSPAN_MAX_RUN_AGE_SECONDS", "0"),
    ],
)
def test_the_handler_refuses_when_made_never_when_a_chain_runs(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad tracer setting stops TracingCallbackHandler() and instrument(), where the app
    sets up; it can never surface from a chain call."""
    monkeypatch.setenv(variable, value)
    provider = TracerProvider()
    with pytest.raises(ValueError, match=variable):
        runspan.TracingCallbackHandler(tracer_provider=provider)
    with pytest.raises(ValueError, match=variable):
        runspan.instrument()
    assert RunnableLambda(lambda x: x + 1).invoke(1) == 2


def test_a_bad_jaeger_url_is_a_one_line_cli_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade", "--database-url", url]).exit_code == 0
    result = runner.invoke(
        main, ["runs", "--database-url", url], env={"RUNSPAN_JAEGER_URL": "jaeger:16686"}
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: RUNSPAN_JAEGER_URL")


def test_a_password_in_a_database_url_never_shows(tmp_path: Path) -> None:
    """Not in configure()'s errors (above), nor in the CLI's."""
    result = CliRunner().invoke(
        main, ["runs", "--database-url", f"postgresql://app:{PASSWORD}@127.0.0.1:1/runs"]
    )
    assert result.exit_code == 1
    assert PASSWORD not in result.output
    assert "***" in result.output

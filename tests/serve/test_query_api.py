"""Jaeger's query HTTP API from ``runspan serve``, checked field by field against the JSON
Jaeger's own query service returns (its ``uimodel`` for ``/api``, OTLP JSON for ``/api/v3``)."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.serve.conftest import Served

_TRACE_KEYS = {"traceID", "spans", "processes", "warnings"}
_SPAN_KEYS = {
    "traceID",
    "spanID",
    "flags",
    "operationName",
    "references",
    "startTime",
    "duration",
    "tags",
    "logs",
    "processID",
    "warnings",
}
_TAG_TYPES = {"string", "bool", "int64", "float64", "binary"}


def _get(base: str, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    query = urllib.parse.urlencode(params, doseq=True)
    request = urllib.request.Request(f"{base}{path}?{query}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["content-type"].startswith("application/json")
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def api(serve: Any, history: dict[str, Any]) -> str:
    served: Served = serve()
    return served.http


def _trace_id(history: dict[str, Any], name: str) -> str:
    return next(run.trace_id for run in history["runs"] if run.name == name)


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


class TestUiApi:
    def test_services_and_operations(self, api: str) -> None:
        status, body = _get(api, "/api/services")
        assert status == 200
        assert body == {
            "data": ["billing", "travel-app"],
            "total": 2,
            "limit": 0,
            "offset": 0,
            "errors": None,
        }
        status, body = _get(api, "/api/services/travel-app/operations")
        assert "execute_tool get_weather" in body["data"]
        assert body["total"] == len(body["data"])
        status, body = _get(api, "/api/operations", service="travel-app", spanKind="client")
        assert body["data"]
        assert {op["spanKind"] for op in body["data"]} == {"client"}
        assert set(body["data"][0]) == {"name", "spanKind"}

    def test_a_trace_in_the_uis_model(self, api: str, history: dict[str, Any]) -> None:
        """The agent's trace as Jaeger's UI reads it: keys, typed tags, references to
        parents, logs from events, microsecond times, one process per service."""
        agent = _trace_id(history, "LangGraph")
        status, body = _get(api, f"/api/traces/{agent}")
        assert status == 200
        assert body["errors"] is None
        (trace,) = body["data"]
        assert set(trace) == _TRACE_KEYS
        assert trace["traceID"] == agent
        assert list(trace["processes"].values()) == [{"serviceName": "travel-app", "tags": []}]
        spans = {span["spanID"]: span for span in trace["spans"]}
        stored = [run for run in history["runs"] if run.trace_id == agent]
        assert len(spans) == len(stored)
        for run in stored:
            span = spans[run.span_id]
            assert set(span) == _SPAN_KEYS
            assert span["startTime"] == run.start_ns // 1000
            assert span["duration"] == run.end_ns // 1000 - run.start_ns // 1000
            assert span["processID"] in trace["processes"]
            assert all(tag["type"] in _TAG_TYPES for tag in span["tags"])
            if run.parent_span_id:
                assert span["references"] == [
                    {"refType": "CHILD_OF", "traceID": agent, "spanID": run.parent_span_id}
                ]
        model = next(s for s in spans.values() if _tags(s).get("gen_ai.operation.name") == "chat")
        tags = {tag["key"]: tag for tag in model["tags"]}
        assert tags["span.kind"]["value"] == "client"
        assert tags["gen_ai.usage.input_tokens"]["type"] == "int64"
        messages = json.loads(tags["gen_ai.input.messages"]["value"])
        assert messages[0]["role"] == "user"

    def test_errors_are_tags_and_logs(self, api: str, history: dict[str, Any]) -> None:
        status, body = _get(api, f"/api/traces/{_trace_id(history, 'divide')}")
        assert status == 200
        (span,) = body["data"][0]["spans"]
        tags = {tag["key"]: tag for tag in span["tags"]}
        assert tags["error"] == {"key": "error", "type": "bool", "value": True}
        assert tags["otel.status_code"]["value"] == "ERROR"
        (log,) = span["logs"]
        fields = {field["key"]: field["value"] for field in log["fields"]}
        assert fields["event"] == "exception"
        assert fields["exception.type"] == "ZeroDivisionError"

    def test_search_with_tags_durations_and_limit(self, api: str, history: dict[str, Any]) -> None:
        status, body = _get(
            api, "/api/traces", service="travel-app", tags=json.dumps({"error": "true"})
        )
        assert [t["traceID"] for t in body["data"]] == [_trace_id(history, "divide")]
        status, body = _get(api, "/api/traces", service="travel-app", tag="langchain.run_type:tool")
        assert [t["traceID"] for t in body["data"]] == [_trace_id(history, "LangGraph")]
        status, body = _get(api, "/api/traces", service="travel-app", limit=2)
        assert len(body["data"]) == 2
        status, body = _get(api, "/api/traces", service="travel-app", minDuration="1h")
        assert body["data"] == []
        future_us = int((time.time() + 3600) * 1e6)
        status, body = _get(api, "/api/traces", service="travel-app", start=future_us)
        assert status == 400  # start after the default end (now)
        status, body = _get(
            api, "/api/traces", traceID=[_trace_id(history, "trim"), _trace_id(history, "divide")]
        )
        assert len(body["data"]) == 2

    def test_bad_requests_in_jaegers_error_shape(self, api: str) -> None:
        status, body = _get(api, "/api/traces")
        assert status == 400
        assert body["errors"] == [{"code": 400, "msg": "parameter 'service' is required"}]
        status, body = _get(api, "/api/traces", service="x", minDuration="soon")
        assert status == 400
        status, body = _get(api, "/api/traces/not-hex")
        assert status == 400
        status, body = _get(api, f"/api/traces/{'f' * 32}")
        assert status == 404
        assert body["errors"][0]["code"] == 404

    def test_dependencies(self, api: str) -> None:
        status, body = _get(api, "/api/dependencies", endTs=int(time.time() * 1000))
        assert body["data"] == [{"parent": "travel-app", "child": "billing", "callCount": 1}]
        status, body = _get(api, "/api/dependencies", lookback=1, endTs=1000)
        assert (status, body["data"]) == (200, [])


class TestApiV3:
    def test_services_operations_and_a_trace_in_otlp_json(
        self, api: str, history: dict[str, Any]
    ) -> None:
        status, body = _get(api, "/api/v3/services")
        assert body == {"services": ["billing", "travel-app"]}
        status, body = _get(api, "/api/v3/operations", service="billing")
        assert body == {"operations": [{"name": "charge card", "spanKind": "internal"}]}
        agent = _trace_id(history, "LangGraph")
        status, body = _get(api, f"/api/v3/traces/{agent}")
        assert status == 200
        (resource_spans,) = body["result"]["resourceSpans"]
        resource = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
        assert resource["service.name"] == {"stringValue": "travel-app"}
        spans = [span for scope in resource_spans["scopeSpans"] for span in scope["spans"]]
        assert {span["traceId"] for span in spans} == {agent}  # hex, as OTLP JSON has it
        assert all(len(span["spanId"]) == 16 for span in spans)
        kinds = {span["name"]: span["kind"] for span in spans}
        assert kinds["LangGraph"] == 1  # SPAN_KIND_INTERNAL, as a number
        assert all(isinstance(span["startTimeUnixNano"], str) for span in spans)

    def test_find_traces(self, api: str, history: dict[str, Any]) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        window = {
            "query.start_time_min": (now - dt.timedelta(hours=1)).isoformat(),
            "query.start_time_max": (now + dt.timedelta(minutes=1)).isoformat(),
        }
        status, body = _get(api, "/api/v3/traces", **window, **{"query.service_name": "billing"})
        assert status == 200
        found = {
            span["traceId"]
            for resource in body["result"]["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        }
        assert found == {_trace_id(history, "checkout")}
        status, body = _get(api, "/api/v3/traces", **{"query.service_name": "billing"})
        assert status == 400
        assert body["error"]["httpCode"] == 400
        status, body = _get(api, "/api/v3/traces", **window, **{"query.service_name": "nobody"})
        assert (status, body) == (404, {"error": {"httpCode": 404, "message": "No traces found"}})


def _post_json(base: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_feedback_over_http(api: str, history: dict[str, Any], database_url: str) -> None:
    """POST /api/feedback stores a score on a run; a bad body is 400, and says why."""
    from sqlalchemy import create_engine, text

    run = next(r for r in history["runs"] if r.name == "LangGraph")
    status, body = _post_json(
        api, "/api/feedback", {"run_id": run.run_id, "key": "thumbs", "score": 1}
    )
    assert (status, body) == (201, {"stored": True, "run_id": run.run_id, "key": "thumbs"})
    status, body = _post_json(api, "/api/feedback", {"run_id": run.run_id, "key": "thumbs"})
    assert status == 400
    assert "score" in body["error"]
    status, body = _post_json(api, "/api/feedback", ["not", "an", "object"])
    assert status == 400
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = [
            tuple(row)
            for row in connection.execute(
                text("SELECT run_id, trace_id, key, score, source FROM feedback")
            )
        ]
    engine.dispose()
    assert rows == [(run.run_id, run.trace_id, "thumbs", 1.0, "http")]


def test_the_token_guards_the_query_api(serve: Any, history: dict[str, Any]) -> None:
    served: Served = serve("--token", "t0ken")
    status, body = _get(served.http, "/api/services")
    assert status == 401
    status, body = _get(served.http, "/api/v3/services")
    assert status == 401
    status, body = _get(served.http, "/api/services", {"Authorization": "Bearer t0ken"})
    assert status == 200
    assert "travel-app" in body["data"]
    status, body = _post_json(served.http, "/api/feedback", {"run_id": "x", "key": "k"})
    assert status == 401

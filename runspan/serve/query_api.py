"""Jaeger's query HTTP API over the database, for Jaeger-compatible clients with no Jaeger in
between: Grafana's Jaeger data source, MCP servers for Jaeger, scripts.

The routes, parameters and JSON are Jaeger's own (its query service's ``/api`` handlers and its
API v3 HTTP gateway): ``/api/services``, ``/api/services/{service}/operations``,
``/api/operations``, ``/api/traces`` (search), ``/api/traces/{traceID}``, ``/api/dependencies``,
and ``/api/v3/services``, ``/api/v3/operations``, ``/api/v3/traces``,
``/api/v3/traces/{trace_id}``. Errors come in each API's error shape.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runspan.serve.auth import BearerToken
from runspan.serve.jaeger_api import TraceChunks
from runspan.serve.jaeger_json import otlp_json, ui_trace
from runspan.storage import StorageError
from runspan.storage.search import TraceSearch

# Jaeger's defaults: a search looks two days back for 100 traces; dependencies one day back.
SEARCH_LOOKBACK_US = 2 * 24 * 3600 * 10**6
SEARCH_LIMIT = 100
DEPENDENCY_LOOKBACK_MS = 24 * 3600 * 1000

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 6e10, "h": 3.6e12}


class BadParameter(ValueError):
    pass


def go_duration_ms(text: str, name: str) -> float:
    """A Go duration ("1.5s", "100ms", "1h2m") in milliseconds, as Jaeger's parser reads it."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise BadParameter(f"unable to parse param '{name}': invalid duration {text!r}")
    return sum(float(number) * _UNIT_NS[unit] for number, unit in parts) / 1e6


def trace_id(text: str) -> str:
    """A trace id as Jaeger accepts it: up to 32 hex digits, padded on the left."""
    if not 0 < len(text) <= 32 or not re.fullmatch(r"[0-9a-fA-F]+", text):
        raise BadParameter(f"cannot parse traceID {text!r}: up to 32 hex digits")
    return text.lower().rjust(32, "0")


def _int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadParameter(f"unable to parse param '{name}': not an integer") from None


def _rfc3339_ns(text: str, name: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(f"malformed parameter {name}: not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _v1_error(status: int, message: str) -> Response:
    body = {"data": None, "total": 0, "limit": 0, "offset": 0}
    return JSONResponse({**body, "errors": [{"code": status, "msg": message}]}, status)


def _v1(data: Any, total: int | None = None) -> Response:
    body = {"data": data, "total": total or 0, "limit": 0, "offset": 0, "errors": None}
    return JSONResponse(body)


def _v3_error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"httpCode": status, "message": message}}, status)


class _QueryApi:
    """The handlers, each answering one route from the store, in a worker thread."""

    def __init__(self, traces: TraceChunks, token: BearerToken) -> None:
        self.traces = traces
        self.store = traces.store
        self.token = token

    def guarded(self, handler: Callable[[Request], Any], v3: bool) -> Callable[[Request], Any]:
        error = _v3_error if v3 else _v1_error
        token = self.token

        async def endpoint(request: Request) -> Response:
            if not token.allows(request.headers.get("authorization")):
                return error(401, "missing or wrong bearer token")
            try:
                answer: Response = await run_in_threadpool(handler, request)
                return answer
            except BadParameter as bad:
                return error(400, str(bad))
            except StorageError as failed:
                return error(503, str(failed))

        return endpoint

    # --- the UI's API (/api) ---------------------------------------------------------------

    def services(self, request: Request) -> Response:
        found = self.store.services()
        return _v1(found, len(found))

    def operations_of(self, request: Request) -> Response:
        names = sorted({name for name, _ in self.store.operations(request.path_params["service"])})
        return _v1(names, len(names))

    def operations(self, request: Request) -> Response:
        service = request.query_params.get("service")
        if not service:
            raise BadParameter("parameter 'service' is required")
        found = self.store.operations(service, request.query_params.get("spanKind") or None)
        data = [{"name": name, "spanKind": kind} for name, kind in found]
        return _v1(data, len(data))

    def search(self, request: Request) -> Response:
        params = request.query_params
        ids = [trace_id(value) for value in params.getlist("traceID")]
        if not ids:
            service = params.get("service")
            if not service:
                raise BadParameter("parameter 'service' is required")
            limit = _int(request, "limit", SEARCH_LIMIT)
            if limit <= 0:
                raise BadParameter("invalid parameter: limit must be greater than 0")
            end_us = _int(request, "end", int(time.time() * 10**6))
            start_us = _int(request, "start", end_us - SEARCH_LOOKBACK_US)
            if start_us > end_us:
                raise BadParameter("invalid parameter: start time must be before end time")
            tags = _tags(params.getlist("tag"), params.getlist("tags"))
            found = self.store.find_traces(
                TraceSearch(
                    service=service,
                    operation=params.get("operation") or None,
                    attributes=tags,
                    start_min_ns=start_us * 1000,
                    start_max_ns=end_us * 1000,
                    duration_min_ms=_duration(params.get("minDuration"), "minDuration"),
                    duration_max_ms=_duration(params.get("maxDuration"), "maxDuration"),
                    depth=limit,
                )
            )
            ids = [found_id for found_id, _, _ in found]
        spans = self.traces.spans(ids)
        return _v1([ui_trace(tid, spans[tid]) for tid in ids if spans.get(tid)])

    def get_trace(self, request: Request) -> Response:
        wanted = trace_id(request.path_params["trace_id"])
        spans = self.traces.spans([wanted]).get(wanted)
        if not spans:
            return _v1_error(404, "trace not found")
        return _v1([ui_trace(wanted, spans)])

    def dependencies(self, request: Request) -> Response:
        end_ms = _int(request, "endTs", int(time.time() * 1000))
        lookback_ms = _int(request, "lookback", DEPENDENCY_LOOKBACK_MS)
        found = self.store.dependencies((end_ms - lookback_ms) * 10**6, end_ms * 10**6)
        service = request.query_params.get("service")
        data = [
            {"parent": parent, "child": child, "callCount": calls}
            for parent, child, calls in found
            if not service or service in (parent, child)
        ]
        return _v1(data)

    # --- API v3 (/api/v3) ------------------------------------------------------------------

    def v3_services(self, request: Request) -> Response:
        return JSONResponse({"services": self.store.services()})

    def v3_operations(self, request: Request) -> Response:
        found = self.store.operations(
            request.query_params.get("service", ""), request.query_params.get("span_kind") or None
        )
        return JSONResponse(
            {"operations": [{"name": name, "spanKind": kind} for name, kind in found]}
        )

    def v3_trace(self, request: Request) -> Response:
        wanted = trace_id(request.path_params["trace_id"])
        spans = self.traces.spans([wanted]).get(wanted)
        if not spans:
            return _v3_error(404, "No traces found")
        return JSONResponse(otlp_json([spans]))

    def v3_find(self, request: Request) -> Response:
        params = request.query_params
        low, high = params.get("query.start_time_min"), params.get("query.start_time_max")
        if not low or not high:
            raise BadParameter("query.start_time_min and query.start_time_max are required")
        depth = params.get("query.search_depth") or params.get("query.num_traces")
        search = TraceSearch(
            service=params.get("query.service_name") or None,
            operation=params.get("query.operation_name") or None,
            start_min_ns=_rfc3339_ns(low, "query.start_time_min"),
            start_max_ns=_rfc3339_ns(high, "query.start_time_max"),
            duration_min_ms=_duration(params.get("query.duration_min"), "query.duration_min"),
            duration_max_ms=_duration(params.get("query.duration_max"), "query.duration_max"),
            depth=int(depth) if depth and depth.isdigit() else SEARCH_LIMIT,
        )
        ids = [found_id for found_id, _, _ in self.store.find_traces(search)]
        spans = self.traces.spans(ids)
        if not any(spans.values()):
            return _v3_error(404, "No traces found")
        return JSONResponse(otlp_json(spans[tid] for tid in ids))

    def routes(self) -> list[Route]:
        guarded = self.guarded
        return [
            Route("/api/services", guarded(self.services, False), methods=["GET"]),
            Route(
                "/api/services/{service}/operations",
                guarded(self.operations_of, False),
                methods=["GET"],
            ),
            Route("/api/operations", guarded(self.operations, False), methods=["GET"]),
            Route("/api/traces", guarded(self.search, False), methods=["GET"]),
            Route("/api/traces/{trace_id}", guarded(self.get_trace, False), methods=["GET"]),
            Route("/api/dependencies", guarded(self.dependencies, False), methods=["GET"]),
            Route("/api/v3/services", guarded(self.v3_services, True), methods=["GET"]),
            Route("/api/v3/operations", guarded(self.v3_operations, True), methods=["GET"]),
            Route("/api/v3/traces", guarded(self.v3_find, True), methods=["GET"]),
            Route("/api/v3/traces/{trace_id}", guarded(self.v3_trace, True), methods=["GET"]),
        ]


def query_routes(traces: TraceChunks, token: BearerToken) -> list[Route]:
    """The routes of Jaeger's query HTTP API, answered from ``traces``' store."""
    return _QueryApi(traces, token).routes()


def _duration(text: str | None, name: str) -> float | None:
    return go_duration_ms(text, name) if text else None


def _tags(simple: list[str], as_json: list[str]) -> dict[str, str]:
    """Jaeger's ``tag=key:value`` (repeatable) and ``tags={"key": "value"}``."""
    found: dict[str, str] = {}
    for tag in simple:
        key, sep, value = tag.partition(":")
        if not sep:
            raise BadParameter(f"malformed 'tag' parameter, expecting key:value, received: {tag}")
        found[key] = value
    for text in as_json:
        try:
            given = json.loads(text)
        except ValueError:
            raise BadParameter("malformed 'tags' parameter, cannot unmarshal JSON") from None
        if not isinstance(given, dict):
            raise BadParameter("malformed 'tags' parameter: a JSON object of strings")
        found.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in given.items()})
    return found

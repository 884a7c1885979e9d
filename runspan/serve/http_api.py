"""The HTTP side of ``runspan serve``: OTLP/HTTP's ``POST /v1/traces``, protobuf or JSON,
plain or gzipped, and Jaeger's query HTTP API (:mod:`runspan.serve.query_api`).

Answers follow OTLP/HTTP: the response in the request's encoding; a busy writer is ``503``
with ``Retry-After`` (retryable: the client's exporter backs off and sends again); a bad body is
``400`` and a body over the limit ``413`` (not retryable), each with a ``google.rpc.Status``.
"""

from __future__ import annotations

import json
import zlib

from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runspan.serve.auth import BearerToken
from runspan.serve.ingest import RETRY_AFTER_SECONDS, Busy, Ingest
from runspan.serve.jaeger_api import TraceChunks
from runspan.serve.otlp_json import InvalidRequest, parse_request, response_json
from runspan.serve.query_api import query_routes
from runspan.storage.feedback import feedback_row

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# The largest body accepted, compressed or not (the OTLP exporters send at most a few MiB).
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


class _TooLarge(Exception):
    pass


# google.rpc.Code values of the Status in an error's body.
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _UNAVAILABLE, _UNAUTHENTICATED = 3, 8, 14, 16


def _error(
    http_status: int,
    code: int,
    message: str,
    as_json: bool,
    headers: dict[str, str] | None = None,
) -> Response:
    status = status_pb2.Status(code=code, message=message)
    if as_json:
        text = json_format.MessageToJson(status, indent=None)
        return Response(text, http_status, headers, JSON)
    return Response(status.SerializeToString(), http_status, headers, PROTOBUF)


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, decompressed, refused beyond ``limit`` bytes either way."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        try:
            body = inflater.decompress(body, limit)
        except zlib.error as error:
            raise InvalidRequest(f"the body is not valid gzip: {error}") from None
        if inflater.unconsumed_tail:  # more than limit bytes once inflated
            raise _TooLarge
    return body


def http_app(
    ingest: Ingest,
    token: BearerToken,
    traces: TraceChunks,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> Starlette:
    """The ASGI application of the HTTP port: OTLP in, Jaeger's query API out."""

    async def export(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        as_json = media == JSON
        if not token.allows(request.headers.get("authorization")):
            return _error(401, _UNAUTHENTICATED, "missing or wrong bearer token", as_json)
        if media not in (PROTOBUF, JSON):
            message = f"content-type must be {PROTOBUF} or {JSON}"
            return _error(415, _INVALID_ARGUMENT, message, as_json)
        try:
            body = await _body(request, max_request_bytes)
            if as_json:
                parsed = parse_request(body)
            else:
                parsed = ExportTraceServiceRequest()
                try:
                    parsed.ParseFromString(body)
                except Exception:
                    raise InvalidRequest("the body is not an OTLP protobuf trace request") from None
            accepted = await run_in_threadpool(ingest.accept, parsed)
        except _TooLarge:
            message = f"the request is over {max_request_bytes} bytes"
            return _error(413, _RESOURCE_EXHAUSTED, message, as_json)
        except InvalidRequest as invalid:
            return _error(400, _INVALID_ARGUMENT, str(invalid), as_json)
        except Busy as busy:
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            return _error(503, _UNAVAILABLE, busy.reason, as_json, headers)
        response = ExportTraceServiceResponse()
        if accepted.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=accepted.rejected, error_message=accepted.message
                )
            )
        if as_json:
            return Response(response_json(response), 200, media_type=JSON)
        return Response(response.SerializeToString(), 200, media_type=PROTOBUF)

    async def give_feedback(request: Request) -> Response:
        """``POST /api/feedback``: {"run_id", "key", "score"?, "value"?, "comment"?}."""
        if not token.allows(request.headers.get("authorization")):
            return JSONResponse({"error": "missing or wrong bearer token"}, 401)
        try:
            body = json.loads(await _body(request, 64 * 1024))
            if not isinstance(body, dict):
                raise ValueError("the body is a JSON object: run_id, key, score, value, comment")
            row = feedback_row(
                body.get("run_id"),
                body.get("key"),
                score=body.get("score"),
                value=body.get("value"),
                comment=body.get("comment"),
                source="http",
            )
        except _TooLarge:
            return JSONResponse({"error": "the body is over 64 KB"}, 413)
        except ValueError as invalid:  # JSON errors are ValueErrors too
            return JSONResponse({"error": str(invalid)}, 400)
        if not await run_in_threadpool(ingest.writer.write_feedback, [row]):
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            return JSONResponse({"error": "the database is unreachable"}, 503, headers)
        return JSONResponse({"stored": True, "run_id": row["run_id"], "key": row["key"]}, 201)

    routes = [
        Route("/v1/traces", export, methods=["POST"]),
        Route("/api/feedback", give_feedback, methods=["POST"]),
        *query_routes(traces, token),
    ]
    return Starlette(routes=routes)

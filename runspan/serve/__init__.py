"""``runspan serve``: the SQL history as a tracing backend.

OTLP from any process (another language, a worker fleet, runspan itself with an OTLP endpoint)
lands in the database through the same row builder and writer as an app's own runs: gRPC
``TraceService/Export`` and HTTP ``POST /v1/traces`` (protobuf or JSON, gzipped or not), each
request answered once its spans are written, with OTLP's retryable status when the writer cannot
take it. Loopback by default; a bearer token for anything else.
"""

from runspan.serve.server import Listening, ServeSettings, serve

__all__ = ["Listening", "ServeSettings", "serve"]

"""Links into Jaeger's UI, for the traces that runspan prints."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

JAEGER_URL_ENV = "RUNSPAN_JAEGER_URL"
DEFAULT_JAEGER_URL = "http://localhost:16686"


def jaeger_base_url(argument: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Jaeger's UI: the argument, else ``RUNSPAN_JAEGER_URL``, else ``http://localhost:16686``.

    Raises:
        ValueError: not an http(s) URL.
    """
    env = os.environ if environ is None else environ
    url = argument if argument is not None else env.get(JAEGER_URL_ENV, "").strip()
    url = url or DEFAULT_JAEGER_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        setting = "the Jaeger URL" if argument is not None else JAEGER_URL_ENV
        raise ValueError(f"{setting}={url!r}: use the http(s) URL of Jaeger's UI")
    return url.rstrip("/")


def configured_jaeger_url(environ: Mapping[str, str] | None = None) -> str | None:
    """Jaeger's UI if ``RUNSPAN_JAEGER_URL`` names it, else ``None``: a link to a Jaeger that
    may not exist is noise under every listing.

    Raises:
        ValueError: not an http(s) URL.
    """
    env = os.environ if environ is None else environ
    return jaeger_base_url(environ=env) if env.get(JAEGER_URL_ENV, "").strip() else None


def jaeger_trace_url(trace_id: str, base_url: str | None = None) -> str:
    """The page of one trace in Jaeger's UI."""
    return f"{base_url or jaeger_base_url()}/trace/{trace_id}"

"""Where and how spans go over OTLP: arguments first, then the standard ``OTEL_*`` variables.

Read the way the OpenTelemetry specification says: the signal-specific variable
(``OTEL_EXPORTER_OTLP_TRACES_*``) wins over the general one (``OTEL_EXPORTER_OTLP_*``); a general
HTTP endpoint is a base URL to which ``/v1/traces`` is added, a traces endpoint is used as it is.
Everything is checked here, when ``runspan.configure()`` runs, so that a typo fails at start-up
with a message naming the setting, never later in the export thread. Header values are secrets
(API keys): no message repeats them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from runspan.exporters.previews import DEFAULT_PREVIEW_CHARS

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
PROTOCOLS = (GRPC, HTTP_PROTOBUF)

# The ports OTLP receivers listen on (Jaeger, the Collector): what an endpoint without a declared
# protocol is taken to speak.
GRPC_PORT = 4317
HTTP_PORT = 4318
TRACES_PATH = "/v1/traces"
DEFAULT_ENDPOINT = f"http://localhost:{GRPC_PORT}"

PREVIEW_CHARS_ENV = "RUNSPAN_OTLP_PREVIEW_CHARS"
TRACES_EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
_COMPRESSIONS = ("gzip", "deflate", "none")
_ENDPOINT = "ENDPOINT"
_PROTOCOL = "PROTOCOL"
_HEADERS = "HEADERS"
_CERTIFICATE = "CERTIFICATE"
_INSECURE = "INSECURE"
_TIMEOUT = "TIMEOUT"
_COMPRESSION = "COMPRESSION"


def _variables(suffix: str) -> tuple[str, str]:
    """The traces-specific and the general variable for a setting, in that order."""
    return f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"


def _from_environment(suffix: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """``(variable, value)`` of the first of a setting's variables that is set."""
    for name in _variables(suffix):
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


@dataclass(frozen=True, slots=True, repr=False)
class OtlpSettings:
    """How spans are sent over OTLP.

    Attributes:
        endpoint: the receiver's URL: for gRPC ``http(s)://host:4317``, for HTTP the full URL of
            the traces path (``http(s)://host:4318/v1/traces``).
        protocol: ``"grpc"`` or ``"http/protobuf"``.
        headers: sent with every request (an authenticating collector's API key, say).
        certificate: a PEM file of the certificate authority to trust for ``https``; else the
            system's.
        insecure: gRPC without TLS. ``None`` decides by the endpoint's scheme.
        timeout: seconds an export may take; ``None`` leaves it to the exporter (10 s, or
            ``OTEL_EXPORTER_OTLP_TIMEOUT``).
        preview_chars: the longest string value sent whole; longer ones go as previews.
    """

    endpoint: str
    protocol: str = GRPC
    headers: tuple[tuple[str, str], ...] = ()
    certificate: str | None = None
    insecure: bool | None = None
    timeout: float | None = None
    preview_chars: int = DEFAULT_PREVIEW_CHARS

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"otlp_protocol={self.protocol!r}: use 'grpc' or 'http/protobuf'")
        _check_endpoint(self.endpoint, "otlp_endpoint")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"otlp_timeout={self.timeout!r}: use a positive number of seconds")
        if not isinstance(self.preview_chars, int) or self.preview_chars < 64:
            raise ValueError(
                f"otlp_preview_chars={self.preview_chars!r}: use an integer of at least 64"
            )

    def __repr__(self) -> str:  # never the headers (API keys) nor a password in the URL
        return (
            f"OtlpSettings(endpoint={self.display_endpoint!r}, protocol={self.protocol!r},"
            f" headers={[key for key, _ in self.headers]!r}, certificate={self.certificate!r},"
            f" insecure={self.insecure!r}, timeout={self.timeout!r},"
            f" preview_chars={self.preview_chars!r})"
        )

    @property
    def display_endpoint(self) -> str:
        """The endpoint without any user or password in it, for messages."""
        return safe_endpoint(self.endpoint)

    @classmethod
    def build(
        cls,
        endpoint: str | None = None,
        *,
        protocol: str | None = None,
        headers: Mapping[str, str] | str | None = None,
        certificate: str | None = None,
        insecure: bool | None = None,
        timeout: float | None = None,
        preview_chars: int | None = None,
        environ: Mapping[str, str] | None = None,
        enabled_by_default: bool = False,
    ) -> OtlpSettings | None:
        """Settings from the arguments and the environment; ``None`` when no endpoint is given
        anywhere (nor ``OTEL_TRACES_EXPORTER=otlp``, which means the default endpoint), unless
        ``enabled_by_default``.

        Raises:
            ValueError: a bad argument or variable, named in the message.
        """
        env = os.environ if environ is None else environ
        _check_types(endpoint, headers, insecure, timeout)
        chosen_protocol = _protocol(protocol, env)
        chars = _preview_chars(preview_chars, env)  # checked even when nothing is exported
        location = _endpoint(endpoint, env, enabled_by_default)
        if location is None:
            return None
        url, is_base = location
        if chosen_protocol is None:
            port = urlsplit(url).port
            chosen_protocol = HTTP_PROTOBUF if port == HTTP_PORT else GRPC
        if chosen_protocol == HTTP_PROTOBUF and is_base:
            url = _with_traces_path(url)
        _check_passed_through(env)
        return cls(
            endpoint=url,
            protocol=chosen_protocol,
            headers=_headers(headers, env),
            certificate=_certificate(certificate, env),
            insecure=_insecure(insecure, env),
            timeout=timeout,
            preview_chars=chars,
        )


def _check_types(endpoint: object, headers: object, insecure: object, timeout: object) -> None:
    if endpoint is not None and not isinstance(endpoint, str):
        raise ValueError(f"otlp_endpoint: use a URL string such as {DEFAULT_ENDPOINT}")
    if headers is not None and not isinstance(headers, (str, Mapping)):
        raise ValueError("otlp_headers: use a mapping of str to str, or 'key=value,...'")
    if insecure is not None and not isinstance(insecure, bool):
        raise ValueError(f"otlp_insecure={insecure!r}: use True or False")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise ValueError(f"otlp_timeout={timeout!r}: use a positive number of seconds")


def _check_passed_through(env: Mapping[str, str]) -> None:
    """The variables OpenTelemetry's exporter reads itself, checked here so that a bad one
    fails ``configure()`` with its name rather than later or with a bare parse error."""
    for suffix in (_TIMEOUT,):
        for name in _variables(suffix):
            raw = env.get(name, "").strip()
            if not raw:
                continue
            try:
                ok = float(raw) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"{name}={raw!r}: use a positive number of seconds (OpenTelemetry Python"
                    " reads it in seconds)"
                )
    for name in _variables(_COMPRESSION):
        raw = env.get(name, "").strip().lower()
        if raw and raw not in _COMPRESSIONS:
            raise ValueError(f"{name}={raw!r}: use {', '.join(_COMPRESSIONS)}")


def safe_endpoint(endpoint: str) -> str:
    """``endpoint`` with any ``user:password@`` taken out."""
    parts = urlsplit(endpoint)
    if parts.username is None and parts.password is None:
        return endpoint
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit(parts._replace(netloc=netloc))


def _check_endpoint(url: str, setting: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(
            f"{setting} is not a URL: use http(s)://host:port, e.g. {DEFAULT_ENDPOINT}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{setting} {safe_endpoint(url)!r} is not an http(s) URL with a host: use"
            f" http(s)://host:port, e.g. {DEFAULT_ENDPOINT}"
        )


def _endpoint(
    argument: str | None, env: Mapping[str, str], enabled_by_default: bool
) -> tuple[str, bool] | None:
    """The endpoint, and whether it is a base URL (the general variable, or an argument
    without a path)."""
    if argument is not None:
        _check_endpoint(argument, "otlp_endpoint")
        return argument, urlsplit(argument).path in ("", "/")
    general = _variables(_ENDPOINT)[1]
    found = _from_environment(_ENDPOINT, env)
    if found is not None:
        name, value = found
        _check_endpoint(value, name)
        return value, name == general
    exporters = env.get(TRACES_EXPORTER_ENV, "").strip().lower()
    if exporters:
        names = {part.strip() for part in exporters.split(",")}
        if "otlp" in names:
            return DEFAULT_ENDPOINT, True
    if enabled_by_default:
        return DEFAULT_ENDPOINT, True
    return None


def _with_traces_path(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + TRACES_PATH))


def _protocol(argument: str | None, env: Mapping[str, str]) -> str | None:
    if argument is not None:
        if argument not in PROTOCOLS:
            raise ValueError(f"otlp_protocol={argument!r}: use 'grpc' or 'http/protobuf'")
        return argument
    found = _from_environment(_PROTOCOL, env)
    if found is None:
        return None
    name, value = found
    if value not in PROTOCOLS:
        hint = " (runspan sends protobuf; http/json is not supported)" if "json" in value else ""
        raise ValueError(f"{name}={value!r}: use grpc or http/protobuf{hint}")
    return value


def parse_headers(text: str, setting: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key2=value2`` (values percent-encoded), as the OTLP variables have them."""
    pairs = []
    for number, entry in enumerate(text.split(","), start=1):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            # The entry may hold a secret: say where it is, not what it is.
            raise ValueError(f"{setting}: entry {number} is not key=value")
        pairs.append((unquote(key.strip()).lower(), unquote(value.strip())))
    return tuple(pairs)


def _headers(
    argument: Mapping[str, str] | str | None, env: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    if isinstance(argument, str):
        return parse_headers(argument, "otlp_headers")
    if argument is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in argument.items()):
            raise ValueError("otlp_headers: use a mapping of str to str, or 'key=value,...'")
        return tuple((key.lower(), value) for key, value in argument.items())
    found = _from_environment(_HEADERS, env)
    return parse_headers(found[1], found[0]) if found is not None else ()


def _certificate(argument: str | None, env: Mapping[str, str]) -> str | None:
    if argument is not None:
        name, path = "otlp_certificate", argument
    else:
        found = _from_environment(_CERTIFICATE, env)
        if found is None:
            return None
        name, path = found
    if not Path(path).is_file():
        raise ValueError(f"{name}={path!r}: no such file; give the PEM file of a trusted CA")
    return path


def _insecure(argument: bool | None, env: Mapping[str, str]) -> bool | None:
    if argument is not None:
        return argument
    found = _from_environment(_INSECURE, env)
    if found is None:
        return None
    name, value = found
    if value.lower() not in ("true", "false"):
        raise ValueError(f"{name}={value!r}: use true or false")
    return value.lower() == "true"


def _preview_chars(argument: int | None, env: Mapping[str, str]) -> int:
    if argument is not None:
        return argument
    raw = env.get(PREVIEW_CHARS_ENV, "").strip()
    if not raw:
        return DEFAULT_PREVIEW_CHARS
    if not raw.isdigit() or int(raw) < 64:
        raise ValueError(f"{PREVIEW_CHARS_ENV}={raw!r}: use an integer of at least 64")
    return int(raw)

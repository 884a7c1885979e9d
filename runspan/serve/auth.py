"""Who may use ``runspan serve``: a bearer token, and where it may listen without one."""

from __future__ import annotations

import hmac
import ipaddress
import socket

from runspan.storage.errors import ConfigurationError

TOKEN_ENV = "RUNSPAN_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_bind(host: str, token: str | None, insecure_bind: bool) -> None:
    """Refuse to serve runs beyond this machine to anyone who asks."""
    if token or insecure_bind or is_loopback(host):
        return
    raise ConfigurationError(
        f"runspan serve would listen on {host} with no token: anyone who can reach it could read"
        f" and write your runs. Set --token (or {TOKEN_ENV}) and send it as"
        " 'authorization: Bearer <token>', or pass --insecure-bind if the network is yours alone"
    )


class BearerToken:
    """Checks ``authorization: Bearer <token>``; with no token configured, everyone may."""

    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    @property
    def required(self) -> bool:
        return self._expected is not None

    def allows(self, authorization: str | None) -> bool:
        if self._expected is None:
            return True
        if authorization is None:
            return False
        return hmac.compare_digest(authorization.strip().encode(), self._expected)

"""Loopback names, addresses, ``Host`` headers and origins (for ``--no-auth``)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback_host", "is_loopback_origin", "split_host_header"]


def is_loopback_host(host: str) -> bool:
    """True if ``host`` is ``localhost`` or a loopback address (127.0.0.0/8, ``::1``)."""
    name = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # another host name: what it resolves to may change, so no
        return False


def split_host_header(value: str) -> str | None:
    """The host in a ``Host`` header (``name``, ``name:port``, ``[v6]:port``); None if malformed."""
    value = value.strip()
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return host
    host, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None  # also an unbracketed IPv6 address: not how a browser sends one
    return host


def is_loopback_origin(origin: str) -> bool:
    """True for ``http(s)://`` + a loopback host (any port), e.g. ``http://localhost:5173``."""
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        return False
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return False  # not an origin
    return is_loopback_host(parts.hostname)

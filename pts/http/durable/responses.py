"""HTTP plumbing for the protocol's ASGI app: responses written by hand, bodies read
within bounds, CORS headers.

The protocol fixes status codes, header names and exact content types, so
the verbs' handlers write their responses with these instead of a
framework's response classes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias, cast

from litestar import Request
from litestar.types import HTTPResponseStartEvent, Message, Receive, Send

from pts.errors import BodyTooLarge, ClientDisconnected
from pts.http.durable import wire
from pts.models import StreamInfo

__all__ = [
    "ALLOWED_HEADERS",
    "ALLOWED_METHODS",
    "EXPOSED_HEADERS",
    "EXPOSE_HEADER",
    "SECURITY_HEADERS",
    "AnyRequest",
    "adding_headers",
    "coalesce",
    "disconnect",
    "etag",
    "etag_matches",
    "location",
    "metadata_headers",
    "preflight_headers",
    "raw_headers",
    "read_body",
    "send_error",
    "send_parts",
    "send_response",
]

AnyRequest: TypeAlias = Request[Any, Any, Any]

EXPOSED_HEADERS = (
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
    "Stream-Expires-At, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, "
    "Producer-Received-Seq, ETag, Location, Content-Type, stream-sse-data-encoding"
)
ALLOWED_HEADERS = (
    "content-type, authorization, if-none-match, stream-seq, stream-ttl, stream-expires-at, "
    "stream-closed, producer-id, producer-epoch, producer-seq, stream-forked-from, "
    "stream-fork-offset, stream-fork-sub-offset, last-event-id"
)
ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"

# Sent with every response, errors included: browsers may read them, never sniff them.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"cross-origin"),
]
EXPOSE_HEADER = (b"access-control-expose-headers", EXPOSED_HEADERS.encode())


def location(request: AnyRequest) -> str:
    """The absolute URL of the request's own path (a create's ``Location``)."""
    scope = request.scope
    base = str(request.base_url).rstrip("/")
    path = scope.get("raw_path", b"").decode("latin-1") or (scope["root_path"] + scope["path"])
    return base + path if path.startswith("/") else f"{base}/{path}"


def preflight_headers(request: AnyRequest) -> dict[str, str]:
    """The answer to a CORS preflight: every protocol method and header."""
    wanted = request.headers.get("access-control-request-headers")
    return {
        "access-control-allow-methods": ALLOWED_METHODS,
        "access-control-allow-headers": f"{ALLOWED_HEADERS}, {wanted}"
        if wanted
        else ALLOWED_HEADERS,
        "access-control-max-age": "86400",
    }


def raw_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """Headers as ASGI wants them (latin-1 bytes)."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send``, with ``extra`` headers on the response's start (errors included)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*extra, *message.get("headers", ())]
            message = cast("Message", {**message, "headers": headers})
        await send(message)

    return wrapped


async def send_response(
    send: Send, status: int, headers: Mapping[str, str], body: bytes = b"", *, head: bool = False
) -> None:
    """A whole response: status, headers (with ``content-length``), body."""
    bodyless = status in (204, 304)
    await _start(send, status, headers, None if bodyless or head else len(body))
    payload = b"" if bodyless else body
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def send_parts(
    send: Send, status: int, headers: Mapping[str, str], parts: Sequence[bytes]
) -> None:
    """:func:`send_response` with the body in ``parts``: a megabytes-long read goes
    out without being copied into one buffer first (see :func:`coalesce`)."""
    await _start(send, status, headers, sum(len(part) for part in parts))
    *first, last = coalesce(parts) or [b""]
    for part in first:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": last, "more_body": False})


async def _start(
    send: Send, status: int, headers: Mapping[str, str], content_length: int | None
) -> None:
    raw = raw_headers(headers)
    if content_length is not None:
        raw.append((b"content-length", str(content_length).encode()))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": raw,
    }
    await send(start)


SEND_PIECE = 256 << 10
"""The least a body message carries (but the last) when its parts are small."""


def coalesce(parts: Sequence[bytes], at_least: int = SEND_PIECE) -> list[bytes]:
    """``parts`` as body messages: a part of ``at_least`` bytes or more as it is (no
    copy), runs of smaller ones joined until they reach it (an open stream's read
    is thousands of appends of a few bytes: a message each would cost far more
    than one copy of them)."""
    pieces: list[bytes] = []
    run: list[bytes] = []
    run_bytes = 0
    for part in parts:
        if not part:
            continue
        if len(part) >= at_least:
            if run:
                pieces.append(b"".join(run))
                run, run_bytes = [], 0
            pieces.append(part)
            continue
        run.append(part)
        run_bytes += len(part)
        if run_bytes >= at_least:
            pieces.append(b"".join(run))
            run, run_bytes = [], 0
    if run:
        pieces.append(b"".join(run))
    return pieces


async def send_error(
    send: Send, status: int, content: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> None:
    """An error response with the JSON body ``content`` (:func:`pts.http.errors.error_content`)."""
    out = {name.lower(): value for name, value in (headers or {}).items()}
    out["content-type"] = "application/json"
    await send_response(send, status, out, json.dumps(content).encode())


async def read_body(request: AnyRequest, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it all)."""
    declared = wire.parse_content_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"the body is over {limit} bytes")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client went away")
        if message["type"] != "http.request":
            continue
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise BodyTooLarge(f"the body is over {limit} bytes")
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


async def disconnect(receive: Receive) -> None:
    """Returns when the client goes away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def etag(stream_id: uuid.UUID, start: int, end: int, closed: bool) -> str:
    """The ETag of the bytes ``start``..``end`` of a stream (and whether it ends closed)."""
    return f'"{stream_id}:{start}:{end}{":c" if closed else ""}"'


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (or ``*``)."""
    if header is None:
        return False
    return any(tag.strip() in (etag, "*", "W/" + etag) for tag in header.split(","))


def metadata_headers(stream: StreamInfo, *, with_lifetime: bool = True) -> dict[str, str]:
    """A stream's own headers: content type, next offset, closed, and (unless not) lifetime."""
    headers = {
        "content-type": stream.content_type,
        "stream-next-offset": wire.format_offset(stream.size),
    }
    if stream.closed:
        headers["stream-closed"] = "true"
    if with_lifetime:
        if stream.ttl_seconds is not None:
            headers["stream-ttl"] = str(stream.ttl_seconds)
        if stream.expires_at is not None:
            headers["stream-expires-at"] = wire.format_expires_at(stream.expires_at)
    return headers

"""``GET {path}?offset=`` (catch-up, ``&live=long-poll``, ``&live=sse``) and ``HEAD {path}``.

In steps: the query is parsed and checked (:func:`parse_read`), access is asked
with the lookup (which renews a TTL), the offset placed in the stream, and the
read answered by one of :func:`answer_sse`, :func:`answer_now`, a long-poll at
the tail (:func:`pts.http.durable.live.long_poll`) or :func:`answer_catch_up`.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.types import Send

from pts.errors import BadRequest
from pts.http.durable import wire
from pts.http.durable.context import Context, Target, query_params, single
from pts.http.durable.live import READ_CHUNK, long_poll, read_headers, sse
from pts.http.durable.responses import (
    AnyRequest,
    etag,
    etag_matches,
    metadata_headers,
    send_parts,
    send_response,
)
from pts.models import StreamInfo

__all__ = [
    "ReadRequest",
    "answer_catch_up",
    "answer_now",
    "answer_sse",
    "get",
    "head",
    "parse_read",
    "position_of",
]


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """What a GET asks for, from its query string."""

    offset: int | str
    """A byte offset, or the sentinels ``"-1"`` (the start) and ``"now"`` (the tail)."""
    live: str | None
    """``None`` (catch-up), ``"long-poll"`` or ``"sse"``."""
    cursor: str | None


def parse_read(raw_query: bytes) -> ReadRequest:
    """The read request of a GET's query string; BadRequest for a malformed one."""
    query = query_params(raw_query)
    raw_offset = single(query, "offset")
    live = single(query, "live")
    cursor = single(query, "cursor")
    if live not in (None, "long-poll", "sse"):
        raise BadRequest(f"live={live!r}: use long-poll or sse")
    if live is not None and raw_offset is None:
        raise BadRequest(f"live={live} needs an offset (-1, now, or an offset)")
    offset = wire.parse_offset(raw_offset) if raw_offset is not None else "-1"
    return ReadRequest(offset=offset, live=live, cursor=cursor)


def position_of(stream: StreamInfo, offset: int | str) -> int:
    """The byte position of a read's offset in ``stream`` (the sentinels resolved)."""
    if offset == "-1":
        return 0
    if offset == "now":
        return stream.size
    assert isinstance(offset, int)
    return offset


async def head(ctx: Context, request: AnyRequest, target: Target, send: Send) -> None:
    """The stream's metadata headers, no body."""
    # HEAD never renews a TTL: it is how a client watches one run out.
    stream = await ctx.stream_for(request, target, "view", touch=False)
    headers = metadata_headers(stream)
    headers["cache-control"] = "no-store"
    headers["etag"] = etag(stream.id, 0, stream.size, stream.closed)
    await send_response(send, 200, headers, head=True)


async def get(ctx: Context, request: AnyRequest, target: Target, send: Send) -> None:
    """Read the stream ``target`` names, from the query's offset."""
    wanted = parse_read(request.scope.get("query_string", b""))
    stream = await ctx.stream_for(request, target, "view", touch=True)
    position = position_of(stream, wanted.offset)
    if position > stream.size:
        raise BadRequest("the offset is past the end of the stream")
    if wanted.live == "sse":
        await answer_sse(ctx, request, stream, position, wanted.cursor, send)
    elif wanted.offset == "now" and wanted.live is None:
        await answer_now(stream, send)
    elif wanted.live == "long-poll" and position == stream.size and not stream.closed:
        # At the tail: the hub's own read sees whatever committed since the lookup.
        timeout = ctx.settings.long_poll_timeout
        await long_poll(ctx.pts, request, stream, position, wanted.cursor, send, timeout)
    else:
        # Behind the tail, or at the tail of a closed stream: answer at once.
        await answer_catch_up(ctx, request, stream, position, wanted, send)


async def answer_sse(
    ctx: Context,
    request: AnyRequest,
    stream: StreamInfo,
    position: int,
    cursor: str | None,
    send: Send,
) -> None:
    """``live=sse``: server-sent events from ``position``, once it is an offset the stream gave."""
    if wire.is_json(stream.content_type) and 0 < position < stream.size:
        # Checked before the response starts: an error can still be a 400.
        read = await ctx.pts.store.read(stream.id, position, max_bytes=1)
        if not read.at_boundary:
            raise BadRequest("a JSON stream is read from the offsets it gave")
    await sse(ctx.pts, request, stream, position, cursor, send)


async def answer_now(stream: StreamInfo, send: Send) -> None:
    """``offset=now`` without ``live``: no data, the tail's offset."""
    headers = read_headers(stream, stream.size, up_to_date=True, closed=stream.closed)
    headers["cache-control"] = "no-store"
    await send_response(send, 200, headers, b"[]" if wire.is_json(stream.content_type) else b"")


async def answer_catch_up(
    ctx: Context,
    request: AnyRequest,
    stream: StreamInfo,
    position: int,
    wanted: ReadRequest,
    send: Send,
) -> None:
    """Up to :data:`READ_CHUNK` bytes from ``position``, cacheable unless at the tail."""
    json_mode = wire.is_json(stream.content_type)
    read = await ctx.pts.store.read_parts(stream.id, position, max_bytes=READ_CHUNK)
    if json_mode and not read.at_boundary:
        raise BadRequest("a JSON stream is read from the offsets it gave")
    up_to_date = read.next_offset >= read.size
    closed = read.closed and up_to_date
    headers = read_headers(stream, read.next_offset, up_to_date=up_to_date, closed=closed)
    if wanted.live == "long-poll":
        if not read.data:  # closed, at the tail
            await send_response(send, 204, headers)
            return
        headers["stream-cursor"] = wire.cursor_for(wanted.cursor)
    tag = etag(stream.id, position, read.next_offset, closed)
    headers["etag"] = tag
    # Bytes behind the tail never change; the tail's response does.
    headers["cache-control"] = "no-store" if up_to_date else "private, max-age=60"
    if wanted.live is None and etag_matches(request.headers.get("if-none-match"), tag):
        await send_response(send, 304, headers)
        return
    if json_mode:
        await send_response(send, 200, headers, wire.json_array(read.data))
    else:
        await send_parts(send, 200, headers, read.parts)

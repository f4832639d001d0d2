"""The protocol's live reads: long-poll and server-sent events, followed through the hub.

A backlog is read from the store in pages of :data:`READ_CHUNK`; at the tail,
the hub (one LISTEN for the process) wakes the reader. A client that hangs up
stops its read at once.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from litestar.types import Send

from pts.errors import StreamDeleted, StreamNotFound
from pts.http.durable import wire
from pts.http.durable.responses import AnyRequest, disconnect, raw_headers, send_response
from pts.live.buffer import Chunk
from pts.models import StreamInfo

if TYPE_CHECKING:
    from pts.core import PersistentTextStreaming

__all__ = [
    "READ_CHUNK",
    "SSE_KEEPALIVE",
    "SSE_MAX_DURATION",
    "long_poll",
    "read_headers",
    "sse",
]

READ_CHUNK = 8 << 20
"""About the most bytes a catch-up response (or SSE data event) carries; clients follow
the offset. Fewer, larger responses read faster (a 5 MB catch-up: 230-400 MB/s at
4 MiB, about 620 MB/s at 8 MiB); each one holds about twice this in memory while
it is sent."""
SSE_MAX_DURATION = 60.0
"""An SSE response ends after this long (the client reconnects): lets CDNs collapse requests."""
SSE_KEEPALIVE = 15.0


def read_headers(
    stream: StreamInfo, next_offset: int, *, up_to_date: bool, closed: bool
) -> dict[str, str]:
    """The headers of a read's response: its content type, next offset and state."""
    headers = {
        "content-type": stream.content_type,
        "stream-next-offset": wire.format_offset(next_offset),
    }
    if up_to_date:
        headers["stream-up-to-date"] = "true"
    if closed:
        headers["stream-closed"] = "true"
    return headers


async def long_poll(
    pts: PersistentTextStreaming,
    request: AnyRequest,
    stream: StreamInfo,
    position: int,
    cursor: str | None,
    send: Send,
    wait: float,
) -> None:
    """Wait at the tail for new bytes or the close, up to ``wait`` seconds (the long-poll timeout).

    The wait is the hub's (LISTEN/NOTIFY), not a polling loop; a client
    that hangs up stops it at once.
    """
    chunks = pts.subscribe_bytes(stream.id, position)

    async def news() -> Chunk | None:
        async for chunk in chunks:
            if chunk is not None and (chunk.data or chunk.final):
                return chunk
        return None

    waiting = asyncio.ensure_future(news())
    hung_up = asyncio.ensure_future(disconnect(request.receive))
    try:
        await asyncio.wait(
            {waiting, hung_up},
            timeout=wait,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if hung_up.done():
            return
        chunk = waiting.result() if waiting.done() else None
    except StreamNotFound:
        raise StreamNotFound(stream.id, "the stream was deleted") from None
    finally:
        for task in (waiting, hung_up):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StreamNotFound):
            await waiting
        await chunks.aclose()
    data = b"" if chunk is None else chunk.data
    closed = chunk is not None and chunk.final
    next_offset = position if chunk is None else chunk.end
    headers = read_headers(stream, next_offset, up_to_date=True, closed=closed)
    if not closed:
        headers["stream-cursor"] = wire.cursor_for(cursor)
    headers["cache-control"] = "no-store"
    if not data:
        await send_response(send, 204, headers)
        return
    body = wire.json_array(data) if wire.is_json(stream.content_type) else data
    await send_response(send, 200, headers, body)


async def sse(
    pts: PersistentTextStreaming,
    request: AnyRequest,
    stream: StreamInfo,
    position: int,
    cursor: str | None,
    send: Send,
) -> None:
    """Server-sent events: each batch of bytes is one ``data`` event and a ``control``."""
    headers = {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    binary = wire.uses_base64(stream.content_type)
    if binary:
        headers["stream-sse-data-encoding"] = "base64"
    await send({"type": "http.response.start", "status": 200, "headers": raw_headers(headers)})
    events = _sse_events(pts, stream, position, cursor)
    disconnected = asyncio.ensure_future(disconnect(request.receive))
    try:
        async with asyncio.timeout(SSE_MAX_DURATION):
            while True:
                next_event = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait(
                    {next_event, disconnected}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_event not in done:
                    next_event.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_event
                    return
                try:
                    payload = next_event.result()
                except StopAsyncIteration:
                    break
                await send({"type": "http.response.body", "body": payload, "more_body": True})
    except TimeoutError:
        pass
    except (StreamNotFound, StreamDeleted):
        pass  # deleted meanwhile: end the response; a reconnect gets the 404/410
    finally:
        disconnected.cancel()
        await events.aclose()
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _sse_events(
    pts: PersistentTextStreaming, stream: StreamInfo, position: int, cursor: str | None
) -> AsyncGenerator[bytes, None]:
    json_mode = wire.is_json(stream.content_type)
    binary = wire.uses_base64(stream.content_type)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    cursor_value = wire.cursor_for(cursor)
    store = pts.store

    def batch(data: bytes, end: int, up_to_date: bool, closed: bool) -> bytes:
        out = b""
        held = 0
        if data:
            if json_mode:
                payload = wire.json_array(data).decode("utf-8", errors="replace")
            elif binary:
                payload = wire.base64_payload(data)
            else:
                payload = decoder.decode(data, final=closed)
                held = len(decoder.getstate()[0])
            if payload:
                out += wire.data_event(payload)
        return out + wire.control_event(
            end - held, cursor=cursor_value, up_to_date=up_to_date, closed=closed
        )

    # A backlog is caught up in bounded reads; then the hub follows the stream
    # live. A reader that starts at the tail goes to the hub at once: its
    # first read (empty, or what committed since the lookup) is the first event.
    first = True
    while position < stream.size or stream.closed:
        read = await store.read(stream.id, position, max_bytes=READ_CHUNK)
        up_to_date = read.next_offset >= read.size
        closed = read.closed and up_to_date
        yield batch(read.data, read.next_offset, up_to_date, closed)
        first = False
        position = read.next_offset
        if closed:
            return
        if up_to_date:
            break
    async for chunk in pts.subscribe_bytes(stream.id, position, idle=SSE_KEEPALIVE):
        if chunk is None:
            yield wire.control_event(position, cursor=cursor_value, up_to_date=True, closed=False)
            continue
        closed = chunk.final
        if not chunk.data and not closed and not first:
            continue
        first = False
        position = chunk.end
        yield batch(chunk.data, chunk.end, chunk.end >= chunk.size, closed)
        if closed:
            return

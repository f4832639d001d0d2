"""Server-sent events for subscribers: ``GET /streams/{id}/events``.

Events:

- ``text``: the new text as ``data``; ``id`` is the byte offset right after it
  (always a character boundary), so a client that reconnects with
  ``Last-Event-ID`` continues exactly there: nothing lost, nothing repeated.
- ``status``: JSON ``{"status", "size", "abort_reason", "error"}`` on every
  change of status; after the final one the response ends.
- a ``: keep-alive`` comment every ``keepalive`` seconds of silence.

With ``html=True`` the ``text`` data is escaped HTML that htmx's SSE extension
can swap straight into a page, and ``status`` data is the bare status word.

The events are encoded here, not by Litestar's ``ServerSentEvent``: a flush
reaches every subscriber of a stream in this process as the same update, so
its bytes are encoded once and written to each connection as they are.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

from litestar.response import Stream

from pts.core import PersistentTextStreaming
from pts.errors import StreamNotFound
from pts.live.subscribe import Update

RETRY_MS = 1000
"""How long a disconnected EventSource waits before it reconnects."""

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_HELLO = f": pts\nretry: {RETRY_MS}\n\n".encode()
_KEEPALIVE = b": keep-alive\n\n"


def encode_event(event: str, data: str, event_id: int | None = None) -> bytes:
    """One SSE event: ``data`` split into ``data:`` lines (EventSource joins them with \\n)."""
    lines = [f"event: {event}\n"]
    if event_id is not None:
        lines.append(f"id: {event_id}\n")
    lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    lines.append("\n")
    return "".join(lines).encode()


async def event_stream(
    pts: PersistentTextStreaming,
    stream_id: uuid.UUID,
    offset: int,
    *,
    as_html: bool = False,
    keepalive: float = 15.0,
) -> Stream:
    """The SSE response for one subscriber.

    The first update (the catch-up read) is awaited here, so an unknown
    stream or a bad offset raises (and becomes a 4xx) before any event is sent.
    """
    updates = pts.subscribe_text(stream_id, offset, idle=keepalive)
    try:
        first = await anext(updates)
    except BaseException:
        await updates.aclose()
        raise
    assert first is not None  # the catch-up read comes first
    return Stream(
        _events(updates, first, as_html=as_html),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    updates: AsyncGenerator[Update | None, None], first: Update, *, as_html: bool
) -> AsyncIterator[bytes]:
    status = None
    try:
        yield _HELLO
        update: Update | None = first
        while True:
            if update is None:
                yield _KEEPALIVE
            else:
                # A long backlog comes in pages, each with the stream's status: a
                # final status is told once, with the last page (it ends the response).
                send_status = update.finished or (
                    update.status != status and not update.status.finished
                )
                if send_status:
                    status = update.status
                yield _encode_update(update, as_html, send_status)
                if update.finished:
                    return
            try:
                update = await anext(updates)
            except StopAsyncIteration:
                return
            except StreamNotFound:
                yield encode_event("status", "deleted" if as_html else '{"status": "deleted"}')
                return
    finally:
        await updates.aclose()


def _encode_update(update: Update, as_html: bool, send_status: bool) -> bytes:
    """The events for one update; encoded once when the update is shared."""
    key = f"sse:{as_html}:{send_status}"
    if update.shared is not None:
        cached = update.shared.get(key)
        if isinstance(cached, bytes):
            return cached
    parts = []
    if update.text:
        data = html.escape(update.text) if as_html else update.text
        parts.append(encode_event("text", data, update.end))
    if send_status:
        parts.append(_status_event(update, as_html))
    encoded = b"".join(parts)
    if update.shared is not None:
        update.shared[key] = encoded
    return encoded


def _status_event(update: Update, as_html: bool) -> bytes:
    if as_html:
        return encode_event("status", html.escape(update.status))
    payload = {
        "status": str(update.status),
        "size": update.end,
        "abort_reason": update.abort_reason,
        "error": update.error,
    }
    return encode_event("status", json.dumps(payload))

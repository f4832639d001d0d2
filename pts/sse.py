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
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from pts.core import PersistentTextStreaming
from pts.errors import StreamNotFound
from pts.hub import Update

RETRY_MS = 1000
"""How long a disconnected EventSource waits before it reconnects."""


async def event_stream(
    pts: PersistentTextStreaming,
    stream_id: uuid.UUID,
    offset: int,
    *,
    as_html: bool = False,
    keepalive: float = 15.0,
) -> ServerSentEvent:
    """The SSE response for one subscriber.

    The first update (the catch-up read) is awaited here, so an unknown
    stream or a bad offset raises (and becomes a 4xx) before any event is sent.
    """
    updates = pts.subscribe(stream_id, offset)
    try:
        first = await anext(updates)
    except BaseException:
        await updates.aclose()
        raise
    return ServerSentEvent(
        _events(updates, first, as_html=as_html, keepalive=keepalive),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    updates: AsyncGenerator[Update, None], first: Update, *, as_html: bool, keepalive: float
) -> AsyncIterator[ServerSentEventMessage]:
    status = None
    pending: asyncio.Future[Update] | None = None
    update: Update | None = first
    try:
        yield ServerSentEventMessage(comment="pts", retry=RETRY_MS, data=None)
        while True:
            if update is not None:
                if update.text:
                    data = html.escape(update.text) if as_html else update.text
                    yield ServerSentEventMessage(event="text", data=data, id=update.end)
                if update.status != status or update.finished:
                    status = update.status
                    yield _status_message(update, as_html)
                if update.finished:
                    return
            # Wait for the next update without cancelling the subscription
            # when the keep-alive timer fires.
            if pending is None:
                pending = asyncio.ensure_future(anext(updates))
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                update = None
                yield ServerSentEventMessage(comment="keep-alive", data=None)
                continue
            pending = None
            try:
                update = done.pop().result()
            except StopAsyncIteration:
                return
            except StreamNotFound:
                data = "deleted" if as_html else json.dumps({"status": "deleted"})
                yield ServerSentEventMessage(event="status", data=data)
                return
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await updates.aclose()


def _status_message(update: Update, as_html: bool) -> ServerSentEventMessage:
    if as_html:
        return ServerSentEventMessage(event="status", data=html.escape(update.status))
    payload = {
        "status": str(update.status),
        "size": update.end,
        "abort_reason": update.abort_reason,
        "error": update.error,
    }
    return ServerSentEventMessage(event="status", data=json.dumps(payload))

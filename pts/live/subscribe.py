"""Text subscriptions: a stream's bytes from the hub, decoded into :class:`Update` values.

:func:`subscribe_text` is what :meth:`PersistentTextStreaming.subscribe
<pts.PersistentTextStreaming.subscribe>` and the SSE route read: it decodes
incrementally, so that every update ends on a character boundary, and does
the work every subscriber of a shared chunk would repeat (decoding, fetching
a finished stream's reasons) once for all of them.
"""

from __future__ import annotations

import asyncio
import codecs
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import cast

from pts.errors import InvalidOffset, StreamNotFound
from pts.live.hub import Hub
from pts.models import StreamStatus
from pts.store.base import Store

__all__ = ["Update", "subscribe_text"]

_WITH_REASON = (StreamStatus.ABORTED, StreamStatus.ERROR, StreamStatus.TIMEOUT)


@dataclass(frozen=True, slots=True)
class Update:
    """What a subscriber receives: new text, a status change, or both.

    ``offset`` is the byte offset where ``text`` starts and ``end`` the byte
    offset right after it: resume a subscription from ``end`` to continue
    exactly where this update left off (it is always a character boundary).
    """

    offset: int
    end: int
    text: str
    status: StreamStatus
    finished: bool
    abort_reason: str | None = None
    error: str | None = None
    shared: dict[str, object] | None = field(default=None, compare=False, repr=False)
    """Internal: set when every subscriber of this process got this very update, so
    its encodings (SSE bytes) are computed once and shared."""


async def subscribe_text(
    hub: Hub,
    store: Store,
    stream_id: uuid.UUID,
    offset: int = 0,
    *,
    idle: float | None = None,
) -> AsyncGenerator[Update | None, None]:
    """Text updates from ``offset`` (see :meth:`PersistentTextStreaming.subscribe`).

    Decodes incrementally: a character split across two chunks is held back
    until it is whole, so every update ends on a character boundary. With
    ``idle``, yields ``None`` after each ``idle`` seconds of silence.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    first = True
    status: StreamStatus | None = None
    async for chunk in hub.subscribe_bytes(stream_id, offset, idle=idle):
        if chunk is None:
            yield None
            continue
        if first:
            first = False
            if chunk.data and chunk.data[0] & 0b1100_0000 == 0b1000_0000:
                raise InvalidOffset(stream_id, offset, chunk.size)
        final = chunk.final
        held = decoder.getstate()[0]
        shared = chunk.shared if not held else None
        if shared is not None:
            # Every subscriber that is at this chunk's start decodes it the same
            # way: do it once (keeping an incomplete last character for later).
            decoded = shared.get("text")
            if decoded is None:
                once = codecs.getincrementaldecoder("utf-8")(errors="replace")
                decoded = shared["text"] = (once.decode(chunk.data, final=final), once.getstate())
            text, state = cast("tuple[str, tuple[bytes, int]]", decoded)
            decoder.setstate(state)
        else:
            text = decoder.decode(chunk.data, final=final)
        # Bytes of an incomplete character held from before start this update's text.
        start = chunk.start - len(held)
        end = chunk.end - len(decoder.getstate()[0])
        if not text and chunk.status == status and not final:
            continue  # only part of a character so far
        status = chunk.status
        reason: str | None = None
        error: str | None = None
        if final and chunk.status in _WITH_REASON:
            reason, error = await _reasons(store, stream_id, shared)
        yield Update(start, end, text, chunk.status, final, reason, error, shared)


async def _reasons(
    store: Store, stream_id: uuid.UUID, shared: dict[str, object] | None
) -> tuple[str | None, str | None]:
    """The abort reason and error of a finished stream, fetched once per shared chunk."""
    if shared is not None:
        pending = shared.get("reasons")
        if pending is None:
            pending = shared["reasons"] = asyncio.ensure_future(_fetch_reasons(store, stream_id))
        assert isinstance(pending, asyncio.Future)
        return await asyncio.shield(pending)
    return await _fetch_reasons(store, stream_id)


async def _fetch_reasons(store: Store, stream_id: uuid.UUID) -> tuple[str | None, str | None]:
    try:
        info = await store.get_stream(stream_id)
    except StreamNotFound:
        return None, None
    return info.abort_reason, info.error

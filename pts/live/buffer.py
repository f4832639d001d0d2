"""A subscriber's bounded buffer in the hub, and the :class:`Chunk` of bytes it holds.

The hub's tail reads a stream once per notification and *offers* each chunk to
every subscriber's buffer; the subscriber *takes* them at its own pace. The
buffer is bounded in chunks and in bytes, and never blocks the tail: past its
bounds it forgets what it held and marks itself overflowed, so its subscriber
re-reads from its own offset instead (see :mod:`pts.live.hub`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from pts.models import StreamStatus

__all__ = ["Chunk", "SubscriberBuffer"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes of a stream at an absolute offset, with the stream's state after them."""

    start: int
    data: bytes
    size: int
    status: StreamStatus
    closed: bool
    shared: dict[str, object] | None = field(default=None, compare=False, repr=False)
    """For a chunk a tail hands to many subscribers: work done once for all of them
    (the decoded text, its SSE encoding), keyed by what it is."""

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    @property
    def final(self) -> bool:
        """The chunk reaches the end of a closed stream: nothing follows it.

        Not ``closed`` alone: every page of a read made after the stream closed
        says closed, and only the one that reaches its end is the end.
        """
        return self.closed and self.end >= self.size


class SubscriberBuffer:
    """One subscription's buffer, bounded in updates and in bytes.

    Cheap on purpose: it runs per update per subscriber.
    """

    __slots__ = ("buffer_bytes", "buffer_size", "bytes", "ending", "items", "overflowed", "waiter")

    def __init__(self, buffer_size: int, buffer_bytes: int, *, ending: bool = False) -> None:
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        self.items: deque[Chunk | None] = deque()
        self.bytes = 0  # the data bytes of the chunks in ``items``
        self.overflowed = False
        self.ending = ending  # the hub ends its subscriptions (the server stops)
        self.waiter: asyncio.Future[None] | None = None

    def end(self) -> None:
        """Called by the hub: take a last look at the table, then end the subscription."""
        self.ending = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def offer(self, chunk: Chunk | None) -> None:
        """Called by the tail; never blocks. None means "re-read": news we cannot carry."""
        if self.overflowed:
            return
        size = 0 if chunk is None else len(chunk.data)
        # An empty buffer takes one chunk of any size (a tail's read is one page,
        # shared by every subscriber), so a subscriber that keeps up never re-reads.
        if len(self.items) >= self.buffer_size or (
            self.items and self.bytes + size > self.buffer_bytes
        ):
            # Too slow: forget the buffer; the subscriber re-reads from its offset.
            self.overflowed = True
            self.items.clear()
            self.bytes = 0
            chunk, size = None, 0
        self.items.append(chunk)
        self.bytes += size
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reset(self) -> None:
        """Forget what is buffered: the subscriber is about to read the table itself,
        and that read covers all of it (and whatever an overflow dropped)."""
        self.items.clear()
        self.bytes = 0
        self.overflowed = False

    def take(self) -> Chunk | None:
        """The oldest buffered item (there must be one)."""
        chunk = self.items.popleft()
        if chunk is not None:
            self.bytes -= len(chunk.data)
        return chunk

    async def wait(self, seconds: float) -> bool:
        """Wait until something is buffered (or the end); False after ``seconds`` of nothing."""
        if self.items or self.ending:
            return True
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None
        return bool(self.items) or self.ending


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

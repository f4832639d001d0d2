"""In-process fan-out: one tail per stream per process, many subscribers.

The listener's notification is a hint; the table is the truth. For each
stream that has subscribers in this process, a *tail* reads the new bytes
once per notification and hands them to every subscriber's bounded buffer.
A subscriber whose buffer overflows (a slow or stalled client) is not waited
for: it drops its buffer and re-reads from its own offset, so the producer
and the other subscribers never slow down. The database connections a
process uses do not grow with its subscribers.

Memory is bounded in bytes, not in updates: a subscriber's buffer holds at
most ``buffer_bytes`` (:data:`SUBSCRIBER_BUFFER_BYTES`), and every read
(a catch-up, a re-read after an overflow, a tail's read) asks the store for
at most ``page_bytes`` (:data:`READ_PAGE_BYTES`): a long backlog arrives as
several chunks, read one at a time as the subscriber takes them. A subscriber
that is not taking (its client does not read its socket, so the response's
``send`` waits) is not read for: it costs at most its buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator

from pts.errors import StreamNotFound
from pts.live.buffer import Chunk, SubscriberBuffer
from pts.live.notification import Notification
from pts.logsafe import safe, warn_throttled
from pts.models import StreamStatus
from pts.stats import Counters, LiveStream
from pts.store.base import Store
from pts.tasks import raise_if_cancelling

logger = logging.getLogger("pts.hub")

SUBSCRIBER_BUFFER_BYTES = 1 << 20
"""Default bound of the bytes one subscriber's buffer holds (1 MiB). A subscriber that
falls further behind drops its buffer and re-reads from its own offset, in pages."""

READ_PAGE_BYTES = 1 << 20
"""Default for the most bytes one read asks the store for (1 MiB): a subscription's
catch-up, re-read or tail read, and each page of ``GET /streams/{id}``. A read ends on
a stored chunk's boundary, so it may hold up to one stored chunk more."""


_FOREVER = 86400.0  # a subscriber without keep-alives waits this long for news


class _Tail:
    """Follows one stream for every subscriber in this process: one read per notification."""

    def __init__(self, hub: Hub, stream_id: uuid.UUID) -> None:
        self.hub = hub
        self.stream_id = stream_id
        self.subscribers: set[SubscriberBuffer] = set()
        self.offset: int | None = None  # bytes this tail has read and published
        self.status: StreamStatus | None = None
        self.closed = False
        self.reads = 0
        self._missed = False  # notified before start_at(): read once started
        # When the first notification not yet read for arrived: Stats.delivery_seconds's start.
        self._notified_at: float | None = None
        self._dirty = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"pts-tail-{stream_id}")

    def notify(self) -> None:
        if self._notified_at is None:
            self._notified_at = time.monotonic()
        self._dirty.set()

    def start_at(self, offset: int, status: StreamStatus, closed: bool) -> None:
        """The first subscriber's catch-up read tells the tail where the stream ends.

        Whatever commits after that read notifies; a notification that came
        while the read was running is remembered and read now.
        """
        if self.offset is None:
            self.offset, self.status, self.closed = offset, status, closed
            if self._missed:
                self._dirty.set()

    async def _run(self) -> None:
        while True:
            # NOTIFY is a hint: with none for poll_interval, read anyway (once
            # for every subscriber of this stream in this process).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.hub.poll_interval)
            raise_if_cancelling()  # close(): wait_for (3.11) and the pool may eat it
            notified = self._dirty.is_set()
            self._dirty.clear()
            if self.offset is None:
                self._missed = self._missed or notified  # not started: start_at() reads
                continue
            # A notification arriving during this read is measured from its own time.
            notified_at, self._notified_at = self._notified_at, None
            try:
                read = await self.hub.store.read(
                    self.stream_id, self.offset, max_bytes=self.hub.page_bytes
                )
            except StreamNotFound:
                for sub in list(self.subscribers):
                    sub.offer(None)
                return
            except Exception as exc:  # noqa: BLE001 - keep tailing: retry after poll_interval
                raise_if_cancelling()
                self.hub.counters.database_errors += 1
                warn_throttled(
                    logger,
                    "tail read",
                    "stream %s: tail read failed: %s",
                    self.stream_id,
                    safe(exc),
                )
                await asyncio.sleep(self.hub.poll_interval)
                self._dirty.set()
                continue
            self.reads += 1
            self.hub.reads += 1
            if read.next_offset < read.size:
                self._dirty.set()  # one page of more: read the next one at once
            changed = read.data or read.status != self.status or read.closed != self.closed
            if not changed:
                continue
            chunk = Chunk(self.offset, read.data, read.size, read.status, read.closed, {})
            self.offset, self.status, self.closed = read.next_offset, read.status, read.closed
            for sub in list(self.subscribers):
                sub.offer(chunk)
            if notified_at is not None and read.data:
                self.hub.counters.delivery_seconds.observe(time.monotonic() - notified_at)

    def close(self) -> None:
        self._task.cancel()


class Hub:
    """Every subscription of this process, grouped into one tail per stream."""

    def __init__(
        self,
        store: Store,
        *,
        buffer_size: int = 256,
        buffer_bytes: int = SUBSCRIBER_BUFFER_BYTES,
        page_bytes: int = READ_PAGE_BYTES,
        poll_interval: float = 2.0,
        counters: Counters | None = None,
    ) -> None:
        """:param buffer_size: updates buffered per subscriber at most.
        :param buffer_bytes: bytes buffered per subscriber at most (one chunk larger
            than this is taken into an empty buffer).
        :param page_bytes: the most bytes one read asks the store for.
        :param poll_interval: a tail that heard nothing for this long re-reads anyway.
        :param counters: where the tails count failed reads and deliveries (``pts.stats()``).
        """
        if buffer_size < 1 or buffer_bytes < 1 or page_bytes < 1:
            raise ValueError("buffer_size, buffer_bytes and page_bytes must be at least 1")
        self.store = store
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        self.page_bytes = page_bytes
        self.poll_interval = poll_interval
        self.counters = Counters() if counters is None else counters
        self.tails: dict[uuid.UUID, _Tail] = {}
        self.ending = False
        self.reads = 0
        """Database reads made by tails (one per notification per stream, at most, or one
        per page when a notification brings more than ``page_bytes``)."""

    def buffered_bytes(self, stream_id: uuid.UUID) -> list[int]:
        """The bytes each subscriber of this stream in this process holds in its buffer.

        A read-only view, for monitoring and tests; each is at most ``buffer_bytes``
        (or one chunk, if a single one is larger).
        """
        tail = self.tails.get(stream_id)
        return [] if tail is None else [sub.bytes for sub in tail.subscribers]

    def live_stream(self, stream_id: uuid.UUID) -> LiveStream | None:
        """A read-only view of the stream's tail and subscribers here; None if it has none."""
        tail = self.tails.get(stream_id)
        if tail is None:
            return None
        held = tuple(sub.bytes for sub in tail.subscribers)
        return LiveStream(stream_id, tail.offset, len(held), held, tail.reads)

    def on_notification(self, note: Notification) -> None:
        tail = self.tails.get(note.stream_id)
        if tail is not None:
            tail.notify()

    def on_reconnect(self) -> None:
        """Notifications were lost while the listener was away: every tail re-reads."""
        for tail in self.tails.values():
            tail.notify()

    @property
    def subscriptions(self) -> int:
        """How many subscriptions this process holds (SSE responses, long-polls, ...)."""
        return sum(len(tail.subscribers) for tail in self.tails.values())

    def end_subscriptions(self) -> None:
        """End every subscription, now and from now on (the server stops).

        Each takes one last look at the table first, so that a stream that was
        just ended (an answer the shutdown cut) is seen ending; then it ends
        like a finished one would, without the final status of a stream that
        goes on. An SSE client reconnects from its last event id (to another
        server, or to this one once it is back); a long-poll answers 204.
        """
        self.ending = True
        for tail in self.tails.values():
            for sub in tail.subscribers:
                sub.end()

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()
        self.tails.clear()

    async def subscribe_bytes(
        self, stream_id: uuid.UUID, offset: int = 0, *, idle: float | None = None
    ) -> AsyncGenerator[Chunk | None, None]:
        """Raw chunks from ``offset`` on (live), ending after the stream is closed.

        The first chunk is the catch-up read (possibly empty); later ones carry
        new bytes or a change of status. With ``idle``, ``None`` is yielded
        after every ``idle`` seconds without a chunk (for keep-alives). Raises
        StreamNotFound (also if the stream is deleted meanwhile) or InvalidOffset.
        """
        sub = SubscriberBuffer(self.buffer_size, self.buffer_bytes, ending=self.ending)
        tail = self.tails.get(stream_id)
        if tail is None:
            tail = self.tails[stream_id] = _Tail(self, stream_id)
        # Listen before reading: whatever commits after the catch-up read
        # reaches this subscriber through the tail.
        tail.subscribers.add(sub)
        try:
            position = offset
            last: tuple[StreamStatus, bool] | None = None
            need_read = True
            last_look = False  # the hub ends its subscriptions: this is the final read
            while True:
                if need_read:
                    # One page at a time: the next is read when the caller has taken
                    # this one (a caller that stops taking stops the reads).
                    sub.reset()
                    read = await self.store.read(stream_id, position, max_bytes=self.page_bytes)
                    # The tail follows from the end of this read's snapshot; the
                    # bytes before it this subscriber pages through itself.
                    tail.start_at(read.size, read.status, read.closed)
                    need_read = read.next_offset < read.size
                    item = Chunk(position, read.data, read.size, read.status, read.closed)
                else:
                    if sub.ending:
                        # The table is the truth: one last read, then the end.
                        need_read = last_look = True
                        continue
                    # The tail polls for everyone; here we only wait (and tell
                    # the caller about silence, for keep-alives).
                    if not await sub.wait(idle if idle is not None else _FOREVER):
                        yield None
                        continue
                    if sub.ending:
                        continue
                    queued = sub.take()
                    if queued is None:
                        need_read = True
                        continue
                    if queued.start > position:
                        need_read = True  # a gap: read it from the table
                        continue
                    item = queued
                if item.end < position:
                    continue  # old news: an earlier read already had it
                data = item.data[position - item.start :]
                if data or last != (item.status, item.closed):
                    if position == item.start:
                        yield item  # as the tail made it: its shared work stays shared
                    else:
                        yield Chunk(position, data, item.size, item.status, item.closed)
                last = (item.status, item.closed)
                position += len(data)
                if (item.closed and position >= item.size) or last_look:
                    return
        finally:
            tail.subscribers.discard(sub)
            if not tail.subscribers and self.tails.get(stream_id) is tail:
                tail.close()
                del self.tails[stream_id]

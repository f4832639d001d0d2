"""The in-memory store: a dict per stream, the SQL stores' semantics and typed errors."""

from __future__ import annotations

import bisect
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from pts.errors import (
    ClientIdTaken,
    InvalidInput,
    InvalidOffset,
    InvalidTransition,
    OffsetConflict,
    PathTaken,
    StreamClosed,
    StreamNotFound,
    StreamTooLarge,
)
from pts.live.notification import NotificationHandler
from pts.models import Metadata, ReadResult, StreamInfo, StreamStatus
from pts.store import validate as v
from pts.store.base import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_STREAM_SIZE,
    TIMEOUT_MESSAGE,
    TRANSITIONS,
    Store,
    pending_timeout_message,
)
from pts.testing.compaction import MemoryCompaction
from pts.testing.durable import DurableStreamsRefused
from pts.testing.notify import Notifier
from pts.testing.rows import (
    Clock,
    StoreClock,
    StoredStream,
    collectable,
    expiry,
    prunable,
    reason_fields,
    stale,
    unclaimed,
)

__all__ = ["MemoryStore"]


class MemoryStore(DurableStreamsRefused, MemoryCompaction, Store):
    """A dict-backed :class:`~pts.store.base.Store` with in-process notifications.

    :param max_stream_size: caps every stream's size in bytes, as for the SQL
        stores (default 1 GiB; None: no cap).
    :param clock: returns the current time (timezone-aware); a test may pass
        its own to age streams without sleeping. Times the store records never
        go backwards and always advance (by 1 µs at least), as Postgres'
        ``now()`` does from one transaction to the next.

    Data lives as long as the object: ``close()`` keeps it, so a component
    closed and reopened on the same store finds its streams again.
    """

    driver = "memory"

    def __init__(
        self,
        *,
        max_stream_size: int | None = DEFAULT_MAX_STREAM_SIZE,
        clock: Clock | None = None,
    ) -> None:
        self.max_stream_size = v.max_stream_size(max_stream_size)
        self._clock = StoreClock(clock)
        self._streams: dict[uuid.UUID, StoredStream] = {}
        self._by_client_id: dict[str, uuid.UUID] = {}
        self._by_path: dict[str, uuid.UUID] = {}
        self._notifier = Notifier()

    # -- lifecycle and notifications ----------------------------------------------

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect; the streams stay."""

    def listen(self, handler: NotificationHandler) -> Callable[[], None]:
        """Call ``handler`` for every change of a stream's size, status or closed flag,
        and for its deletion (status ``"deleted"``), like the Postgres listener does:
        on the event loop, soon after the change. Returns a function that removes it."""
        return self._notifier.listen(handler)

    def _now(self) -> datetime:
        return self._clock.now()

    def _get(self, stream_id: uuid.UUID | str) -> StoredStream:
        found = self._streams.get(v.stream_id(stream_id))
        if found is None:
            raise StreamNotFound(stream_id)
        return found

    def _update(self, stream: StoredStream, **changes: object) -> StreamInfo:
        """Replace the row; notify when its size, status or closed flag changed."""
        old = stream.info
        stream.info = new = replace(old, **changes)  # type: ignore[arg-type]
        if (old.size, old.status, old.closed) != (new.size, new.status, new.closed):
            self._notifier.announce(new)
        return new

    # -- streams -------------------------------------------------------------------

    async def create_stream(
        self,
        *,
        client_id: str | None = None,
        path: str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        status: StreamStatus = StreamStatus.PENDING,
        metadata: Metadata | None = None,
        owner: str | None = None,
        expires_at: datetime | None = None,
        ttl: float | None = None,
    ) -> StreamInfo:
        """Create a stream. Raises ClientIdTaken / PathTaken if those are in use."""
        metadata_json = v.new_stream(
            initial=status,
            client_id=client_id,
            path=path,
            content_type=content_type,
            meta=metadata,
            owner=owner,
            expires_at=expires_at,
            ttl=ttl,
        )
        stored_metadata = json.loads(metadata_json)
        if client_id is not None and client_id in self._by_client_id:
            raise ClientIdTaken(client_id)
        if path is not None and path in self._by_path:
            raise PathTaken(path)
        now = self._now()
        status = StreamStatus(status)
        info = StreamInfo(
            id=uuid.uuid4(),
            client_id=client_id,
            path=path,
            content_type=content_type,
            status=status,
            size=0,
            closed=False,
            abort_reason=None,
            error=None,
            created_at=now,
            updated_at=now,
            heartbeat_at=now if status is StreamStatus.STREAMING else None,
            finished_at=None,
            expires_at=expiry(now, expires_at, ttl),
            metadata=stored_metadata,
            owner=owner,
        )
        self._streams[info.id] = StoredStream(info)
        if client_id is not None:
            self._by_client_id[client_id] = info.id
        if path is not None:
            self._by_path[path] = info.id
        self._notifier.announce(info)
        return info

    async def get_stream(self, stream_id: uuid.UUID) -> StreamInfo:
        """A stream's metadata. Raises StreamNotFound."""
        return self._get(stream_id).info

    async def get_stream_by_client_id(self, client_id: str) -> StreamInfo:
        """The stream with this client id. Raises StreamNotFound."""
        v.key("client_id", client_id)
        if client_id not in self._by_client_id:
            raise StreamNotFound(client_id)
        return self._streams[self._by_client_id[client_id]].info

    async def get_stream_by_path(self, path: str) -> StreamInfo:
        """The stream with this path. Raises StreamNotFound."""
        v.key("path", path)
        if path not in self._by_path:
            raise StreamNotFound(path)
        return self._streams[self._by_path[path]].info

    async def append(
        self,
        stream_id: uuid.UUID,
        data: bytes,
        *,
        offset: int,
        finish: StreamStatus | None = None,
        reason: str | None = None,
    ) -> int:
        """Append ``data`` at byte ``offset`` (the stream's size), as
        :meth:`pts.store.base.Store.append`: all or nothing, one winner per offset."""
        stream_id = v.stream_id(stream_id)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"append takes bytes, not {type(data).__name__}")
        if not data and finish is None:
            raise InvalidInput("an append must carry data or finish the stream")
        if finish is not None and not v.status(finish).finished:
            raise InvalidInput(f"finish must be a final status, not {finish}")
        if isinstance(offset, int) and offset < 0:
            raise InvalidOffset(stream_id, offset, 0)
        v.integer("offset", offset)
        v.optional_text("reason", reason)
        data = bytes(data)
        stream = self._get(stream_id)
        info = stream.info
        if info.closed:
            raise StreamClosed(stream_id, info.status)
        if info.size != offset:
            raise OffsetConflict(stream_id, offset, info.size)
        cap = self.max_stream_size
        if cap is not None and info.size + len(data) > cap:
            raise StreamTooLarge(stream_id, info.size, len(data), cap)
        if data:
            stream.starts.append(offset)
            stream.chunks.append(data)
        now = self._now()
        changes: dict[str, object] = {"size": info.size + len(data), "updated_at": now}
        if info.status is StreamStatus.STREAMING:
            changes["heartbeat_at"] = now
        if finish is not None:
            finish = StreamStatus(finish)
            changes.update(status=finish, closed=True, finished_at=now)
            changes.update(reason_fields(finish, reason))
        return self._update(stream, **changes).size

    async def read(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadResult:
        """The bytes from ``offset`` (with ``max_bytes``, those of the chunks that start
        before ``offset + max_bytes``: a read ends on a chunk boundary)."""
        stream_id = v.stream_id(stream_id)
        if isinstance(offset, int) and offset < 0:
            raise InvalidOffset(stream_id, offset, 0)
        v.integer("offset", offset)
        if max_bytes is not None:
            max_bytes = min(v.integer("max_bytes", max_bytes, minimum=1), v.INT8_MAX - offset)
        stream = self._get(stream_id)
        info = stream.info
        if offset > info.size:
            raise InvalidOffset(stream_id, offset, info.size)
        # The chunk holding `offset` (the last one starting at or before it), then on.
        first = max(bisect.bisect_right(stream.starts, offset) - 1, 0)
        end = None if max_bytes is None else offset + max_bytes
        pieces: list[bytes] = []
        at_boundary = offset == info.size
        for start, chunk in zip(stream.starts[first:], stream.chunks[first:], strict=True):
            if end is not None and start >= end:
                break
            if start + len(chunk) <= offset:
                continue
            at_boundary = at_boundary or start == offset
            pieces.append(chunk[offset - start :] if start < offset else chunk)
        data = b"".join(pieces)
        return ReadResult(
            stream_id=stream_id,
            data=data,
            offset=offset,
            next_offset=offset + len(data),
            size=info.size,
            status=info.status,
            closed=info.closed,
            at_boundary=at_boundary,
        )

    async def claim(self, stream_id: uuid.UUID) -> StreamInfo:
        """Move ``pending -> streaming``; a stream that is not pending raises
        InvalidTransition with its current status and size."""
        stream = self._get(stream_id)
        info = stream.info
        if info.status is not StreamStatus.PENDING:
            raise InvalidTransition(info.id, info.status, StreamStatus.STREAMING, info.size)
        now = self._now()
        return self._update(stream, status=StreamStatus.STREAMING, heartbeat_at=now, updated_at=now)

    async def set_status(
        self, stream_id: uuid.UUID, status: StreamStatus, *, reason: str | None = None
    ) -> StreamInfo:
        """Move the stream to ``status`` if the lifecycle allows it (see TRANSITIONS)."""
        stream_id = v.stream_id(stream_id)
        status = v.status(status)
        v.optional_text("reason", reason)
        stream = self._get(stream_id)
        info = stream.info
        if status not in TRANSITIONS.get(info.status, frozenset()):
            raise InvalidTransition(stream_id, info.status, status, info.size)
        now = self._now()
        changes: dict[str, object] = {"status": status, "updated_at": now}
        changes.update(reason_fields(status, reason))
        if status is StreamStatus.STREAMING:
            changes["heartbeat_at"] = now
        if status.finished:
            changes.update(closed=True, finished_at=now)
        return self._update(stream, **changes)

    async def heartbeat(self, stream_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Record that these streams' driver is alive; returns the ids still streaming."""
        alive: set[uuid.UUID] = set()
        for stream_id in [v.stream_id(i) for i in stream_ids]:
            stream = self._streams.get(stream_id)
            if stream is not None and stream.info.status is StreamStatus.STREAMING:
                self._update(stream, heartbeat_at=self._now())
                alive.add(stream_id)
        return alive

    def _stale(self, stale_after: float, limit: int) -> list[StoredStream]:
        v.sweep_args(stale_after, limit)
        cutoff = self._now() - timedelta(seconds=stale_after)
        return stale(self._streams.values(), cutoff)[:limit]

    async def find_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        """Streaming streams whose last heartbeat is older than ``stale_after`` seconds."""
        return [s.info for s in self._stale(stale_after, limit)]

    async def timeout_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        """Mark stale streams ``timeout``."""
        return self._time_out(self._stale(stale_after, limit), TIMEOUT_MESSAGE)

    async def timeout_pending(self, pending_after: float, limit: int = 100) -> list[StreamInfo]:
        """Mark ``timeout`` the streams without a path left ``pending`` for
        ``pending_after`` seconds since their last change."""
        v.sweep_args(pending_after, limit)
        cutoff = self._now() - timedelta(seconds=pending_after)
        waiting = unclaimed(self._streams.values(), cutoff)[:limit]
        return self._time_out(waiting, pending_timeout_message(pending_after))

    def _time_out(self, streams: Iterable[StoredStream], message: str) -> list[StreamInfo]:
        now = self._now()
        return [
            self._update(
                s,
                status=StreamStatus.TIMEOUT,
                closed=True,
                error=message,
                finished_at=now,
                updated_at=now,
            )
            for s in streams
        ]

    async def delete_stream(self, stream_id: uuid.UUID) -> None:
        """Delete a stream and its text. Raises StreamNotFound."""
        if await self.ds_delete(stream_id) == "not_found":
            raise StreamNotFound(stream_id)

    async def collect_garbage(self, limit: int = 100) -> int:
        """Remove up to ``limit`` expired streams (deleted ones are already gone: the
        in-memory store has no forks to hold them)."""
        v.integer("limit", limit, minimum=1, maximum=v.INT4_MAX)
        expired = collectable(self._streams.values(), self._now())[:limit]
        for info in expired:
            self._remove(info.id)
        return len(expired)

    async def prune(self, finished_before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` streams that finished before ``finished_before``."""
        v.prune_args(finished_before, limit)
        doomed = prunable(self._streams.values(), finished_before)[:limit]
        for info in doomed:
            self._remove(info.id)
        return len(doomed)

    async def count_prunable(self, finished_before: datetime) -> int:
        """How many streams :meth:`prune` would delete."""
        v.prune_args(finished_before, 1)
        return len(prunable(self._streams.values(), finished_before))

    def _remove(self, stream_id: uuid.UUID) -> None:
        info = self._streams.pop(stream_id).info
        if info.client_id is not None:
            del self._by_client_id[info.client_id]
        if info.path is not None:
            del self._by_path[info.path]
        self._notifier.announce(info, deleted=True)

    # -- Durable Streams -----------------------------------------------------------

    async def ds_delete(self, stream_id: uuid.UUID) -> str:
        """``"deleted"`` or ``"not_found"`` (with no forks, nothing is soft-deleted)."""
        try:
            stream_id = v.stream_id(stream_id)
        except StreamNotFound:
            return "not_found"
        if stream_id not in self._streams:
            return "not_found"
        self._remove(stream_id)
        return "deleted"

"""The store interface: every operation pts needs from a database, declared once.

:class:`Store` is the declaration. :class:`~pts.store.sql.SQLStore` implements
it once for both database drivers (asyncpg, psycopg);
:class:`~pts.testing.MemoryStore` implements it in memory;
:class:`~pts.store.sync.SyncStore` derives its blocking methods from it. The
lifecycle rules every implementation shares (TRANSITIONS, the defaults, the
sweepers' messages) live here too.
"""

from __future__ import annotations

import uuid
from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pts.models import (
    AppendResult,
    CreateOutcome,
    DurableLookup,
    Metadata,
    Producer,
    ReadParts,
    ReadResult,
    StreamInfo,
    StreamStatus,
)

# Which statuses a stream may move to from each status. Finished streams are
# absent: they never change again.
TRANSITIONS: dict[StreamStatus, frozenset[StreamStatus]] = {
    StreamStatus.PENDING: frozenset(StreamStatus) - {StreamStatus.PENDING},
    StreamStatus.STREAMING: frozenset(s for s in StreamStatus if s.finished),
}

DEFAULT_CONTENT_TYPE = "text/plain"
TIMEOUT_MESSAGE = "the stream's driver stopped heartbeating"
DEFAULT_MAX_STREAM_SIZE = 1024**3  # the default cap on a stream's size, in bytes (1 GiB)
COMPACT_ROW_BYTES = 1 << 20
"""Compaction merges a finished stream's chunk rows into rows of about this many
bytes (those starting in one window of this many bytes of offsets become one)."""


def pending_timeout_message(pending_timeout: float) -> str:
    """The error a pending stream nobody drove ends with (status ``timeout``)."""
    return f"nobody drove this stream within {pending_timeout:g} s of its last change"


class Store(Protocol):
    """What pts needs from a database: the SQL stores and the memory store implement all of it.

    Every operation is abstract, so an implementation that subclasses Store and
    misses one fails when it is instantiated (not with a silent ``None``).
    """

    driver: str
    max_stream_size: int | None  # the cap on every stream's size, in bytes (None: no cap)
    compact_row_bytes: int  # the size compaction's merged rows aim for (COMPACT_ROW_BYTES)

    @abstractmethod
    async def open(self) -> None:
        """Open the connection pool."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection pool."""

    @abstractmethod
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
        """Create a stream. Raises ClientIdTaken / PathTaken if those are in use.

        ``ttl`` (seconds, more than 0; not with ``expires_at``) sets ``expires_at``
        to the store's now plus ``ttl``: a fixed expiry, not renewed by access. An
        expired stream is deleted by :meth:`collect_garbage`, never while it is
        ``streaming``: a driven stream that expires is removed once it finishes.
        """
        ...

    @abstractmethod
    async def get_stream(self, stream_id: uuid.UUID) -> StreamInfo:
        """A stream's metadata. Raises StreamNotFound."""
        ...

    @abstractmethod
    async def get_stream_by_client_id(self, client_id: str) -> StreamInfo:
        """The stream with this client id. Raises StreamNotFound."""
        ...

    @abstractmethod
    async def get_stream_by_path(self, path: str) -> StreamInfo:
        """The stream with this path. Raises StreamNotFound."""
        ...

    @abstractmethod
    async def append(
        self,
        stream_id: uuid.UUID,
        data: bytes,
        *,
        offset: int,
        finish: StreamStatus | None = None,
        reason: str | None = None,
    ) -> int:
        """Append ``data`` at byte ``offset``, which must equal the stream's size.

        Atomic: either all of ``data`` is stored and the new size returned, or
        nothing is stored and OffsetConflict / StreamClosed / StreamNotFound /
        StreamTooLarge (past ``max_stream_size``) is raised. With ``finish``,
        the stream also ends with that status in the same transaction (``data``
        may then be empty); ``reason`` is then stored as for :meth:`set_status`.
        """
        ...

    @abstractmethod
    async def read(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadResult:
        """The bytes from ``offset``; with ``max_bytes``, roughly that many, ending on a chunk
        boundary. Raises StreamNotFound, InvalidOffset."""
        ...

    async def read_parts(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadParts:
        """:meth:`read`, its bytes left in the pieces they are stored in (what the
        HTTP catch-up sends without joining them). This default is one piece."""
        return ReadParts.of(await self.read(stream_id, offset, max_bytes))

    @abstractmethod
    async def claim(self, stream_id: uuid.UUID) -> StreamInfo:
        """Move ``pending -> streaming`` atomically; of concurrent claims exactly one wins.

        The others raise InvalidTransition carrying the current status and size.
        """
        ...

    @abstractmethod
    async def set_status(
        self, stream_id: uuid.UUID, status: StreamStatus, *, reason: str | None = None
    ) -> StreamInfo:
        """Move the stream to ``status`` if the lifecycle allows it (see TRANSITIONS).

        ``reason`` is stored as the abort reason (aborted) or error (error, timeout).
        Raises InvalidTransition (a finished stream never reopens) or StreamNotFound.
        """
        ...

    async def request_stop(self, stream_id: uuid.UUID, reason: str | None = None) -> bool:
        """Ask the process driving ``stream_id`` elsewhere to stop it; True if asked.

        That process stores what it buffered, then ends the stream ``aborted``
        with ``reason`` (:meth:`PersistentTextStreaming.cancel` waits for it, and
        sets the status itself if no one does). False when there is no one to
        ask: the stream is not streaming, or the store has no other processes
        (this default, a MemoryStore's).
        """
        return False

    @abstractmethod
    async def heartbeat(self, stream_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Record that these streams' driver is alive; returns the ids still streaming."""
        ...

    @abstractmethod
    async def find_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        """Streaming streams whose last heartbeat is older than ``stale_after`` seconds."""
        ...

    @abstractmethod
    async def timeout_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        """Mark stale streams ``timeout``; safe to run in many processes at once."""
        ...

    @abstractmethod
    async def timeout_pending(self, pending_after: float, limit: int = 100) -> list[StreamInfo]:
        """Mark ``timeout`` the pts streams (no path) left ``pending`` for ``pending_after``
        seconds since their last change. Durable Streams protocol streams (they have a
        path, and their own TTL) are never touched."""
        ...

    @abstractmethod
    async def delete_stream(self, stream_id: uuid.UUID) -> None:
        """Delete a stream and its text. Raises StreamNotFound.

        A stream that live forks still read from is soft-deleted instead: its
        bytes stay until the last fork goes.
        """
        ...

    @abstractmethod
    async def ds_lookup(
        self, path: str | None, *, stream_id: uuid.UUID | None = None, touch: bool = False
    ) -> DurableLookup | None:
        """The stream at a Durable Streams path (or with ``stream_id``); None if there is none.

        With ``touch``, a sliding TTL is renewed in the same statement.
        """
        ...

    @abstractmethod
    async def ds_create(
        self,
        path: str,
        *,
        content_type: str,
        ttl_seconds: int | None = None,
        expires_at: datetime | None = None,
        closed: bool = False,
        data: bytes = b"",
        source: uuid.UUID | None = None,
        fork_offset: int | None = None,
        fork_sub_offset: int | None = None,
        prefix: bytes = b"",
    ) -> tuple[CreateOutcome, uuid.UUID | None]:
        """Create a stream at ``path`` (a fork of ``source`` if given), atomically.

        An expired stream at ``path`` is replaced; an existing one is reported
        (``EXISTS``) for the caller to compare with the request.
        """
        ...

    @abstractmethod
    async def ds_append(
        self,
        path: str,
        data: bytes,
        *,
        media_type: str,
        close: bool = False,
        stream_seq: str | None = None,
        producer: Producer | None = None,
    ) -> AppendResult:
        """Append (and/or close) under the stream's row lock, with the producer and
        Stream-Seq rules, in one transaction. Refusals are outcomes, not errors,
        except an append past ``max_stream_size``: StreamTooLarge (nothing stored)."""
        ...

    @abstractmethod
    async def ds_delete(self, stream_id: uuid.UUID) -> str:
        """``"deleted"``, ``"soft_deleted"`` (live forks hold it) or ``"not_found"``."""
        ...

    @abstractmethod
    async def collect_garbage(self, limit: int = 100) -> int:
        """Remove up to ``limit`` expired or deleted streams no live fork needs.

        An expired stream that is still ``streaming`` stays until it finishes."""
        ...

    @abstractmethod
    async def prune(self, finished_before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` finished streams (done, error, timeout, aborted) whose
        ``finished_at`` is before ``finished_before``, oldest first, in one short
        transaction; returns how many went.

        Each goes as with :meth:`delete_stream`: one whose bytes live forks still
        read is soft-deleted (counted, and never a candidate again). Streams
        another transaction holds are skipped, not waited for, so it is safe
        while serving; call it until it returns 0 (``pts prune`` does).
        """
        ...

    @abstractmethod
    async def count_prunable(self, finished_before: datetime) -> int:
        """How many streams :meth:`prune` would delete for ``finished_before`` (a dry run)."""
        ...

    @abstractmethod
    async def compact(self, stream_id: uuid.UUID) -> int:
        """Merge a finished (closed) stream's chunk rows into few large rows (about
        :data:`COMPACT_ROW_BYTES` each); how many rows went (0 if it is not finished,
        not found, or has nothing to merge). Every read returns the same before and
        after, readers in flight and forks included; nobody waits for it but a
        second compaction of the same stream."""
        ...

    @abstractmethod
    async def compact_finished(self, limit: int = 10) -> int:
        """Compact up to ``limit`` finished streams not compacted yet (the sweeper's
        background work; many processes may run it at once). How many it compacted."""
        ...

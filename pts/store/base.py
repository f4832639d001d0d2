"""The store interface and the logic both drivers share.

A :class:`Store` is the only thing in pts that speaks SQL. Each driver
(asyncpg, psycopg) implements three primitives over its own pool and error
types; everything else (the queries, the lifecycle rules, turning an empty
result into the right typed error) lives here once.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, cast

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
from pts.models import (
    AppendOutcome,
    AppendResult,
    CreateOutcome,
    DurableLookup,
    Metadata,
    Producer,
    ReadResult,
    StreamInfo,
    StreamStatus,
)
from pts.store import validate as v


class Row(Protocol):
    """A result row: asyncpg's Record and psycopg's tuple rows both index by position."""

    def __getitem__(self, index: int, /) -> object: ...


# Which statuses a stream may move to from each status. Finished streams are
# absent: they never change again.
TRANSITIONS: dict[StreamStatus, frozenset[StreamStatus]] = {
    StreamStatus.PENDING: frozenset(StreamStatus) - {StreamStatus.PENDING},
    StreamStatus.STREAMING: frozenset(s for s in StreamStatus if s.finished),
}

DEFAULT_CONTENT_TYPE = "text/plain"
TIMEOUT_MESSAGE = "the stream's driver stopped heartbeating"
DEFAULT_MAX_STREAM_SIZE = 1024**3  # the default cap on a stream's size, in bytes (1 GiB)


def pending_timeout_message(pending_timeout: float) -> str:
    """The error a pending stream nobody drove ends with (status ``timeout``)."""
    return f"nobody drove this stream within {pending_timeout:g} s of its last change"


class UniqueViolation(Exception):
    """Raised by a driver's ``_fetch`` when a unique constraint rejects a row."""

    def __init__(self, constraint: str) -> None:
        self.constraint = constraint
        super().__init__(constraint)


class Store(Protocol):
    """What pts needs from a database. Both drivers implement all of it."""

    driver: str
    max_stream_size: int | None  # the cap on every stream's size, in bytes (None: no cap)

    async def open(self) -> None:
        """Open the connection pool."""

    async def close(self) -> None:
        """Close the connection pool."""

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
    ) -> StreamInfo:
        """Create a stream. Raises ClientIdTaken / PathTaken if those are in use."""
        ...

    async def get_stream(self, stream_id: uuid.UUID) -> StreamInfo:
        """A stream's metadata. Raises StreamNotFound."""
        ...

    async def get_stream_by_client_id(self, client_id: str) -> StreamInfo:
        """The stream with this client id. Raises StreamNotFound."""
        ...

    async def get_stream_by_path(self, path: str) -> StreamInfo:
        """The stream with this path. Raises StreamNotFound."""
        ...

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

    async def read(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadResult:
        """The bytes from ``offset``; with ``max_bytes``, roughly that many, ending on a chunk
        boundary. Raises StreamNotFound, InvalidOffset."""
        ...

    async def claim(self, stream_id: uuid.UUID) -> StreamInfo:
        """Move ``pending -> streaming`` atomically; of concurrent claims exactly one wins.

        The others raise InvalidTransition carrying the current status and size.
        """
        ...

    async def set_status(
        self, stream_id: uuid.UUID, status: StreamStatus, *, reason: str | None = None
    ) -> StreamInfo:
        """Move the stream to ``status`` if the lifecycle allows it (see TRANSITIONS).

        ``reason`` is stored as the abort reason (aborted) or error (error, timeout).
        Raises InvalidTransition (a finished stream never reopens) or StreamNotFound.
        """
        ...

    async def heartbeat(self, stream_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Record that these streams' driver is alive; returns the ids still streaming."""
        ...

    async def find_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        """Streaming streams whose last heartbeat is older than ``stale_after`` seconds."""
        ...

    async def timeout_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        """Mark stale streams ``timeout``; safe to run in many processes at once."""
        ...

    async def timeout_pending(self, pending_after: float, limit: int = 100) -> list[StreamInfo]:
        """Mark ``timeout`` the pts streams (no path) left ``pending`` for ``pending_after``
        seconds since their last change. Durable Streams protocol streams (they have a
        path, and their own TTL) are never touched."""
        ...

    async def delete_stream(self, stream_id: uuid.UUID) -> None:
        """Delete a stream and its text. Raises StreamNotFound.

        A stream that live forks still read from is soft-deleted instead: its
        bytes stay until the last fork goes.
        """
        ...

    async def ds_lookup(
        self, path: str | None, *, stream_id: uuid.UUID | None = None, touch: bool = False
    ) -> DurableLookup | None:
        """The stream at a Durable Streams path (or with ``stream_id``); None if there is none.

        With ``touch``, a sliding TTL is renewed in the same statement.
        """
        ...

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

    async def ds_delete(self, stream_id: uuid.UUID) -> str:
        """``"deleted"``, ``"soft_deleted"`` (live forks hold it) or ``"not_found"``."""
        ...

    async def collect_garbage(self, limit: int = 100) -> int:
        """Remove up to ``limit`` expired or deleted streams no live fork needs."""
        ...


class SQLStore(ABC):
    """The shared implementation of :class:`Store` over three driver primitives.

    Every method validates its arguments (:mod:`pts.store.validate`) before any
    SQL: what Postgres cannot store is an InvalidInput, never a driver error.

    ``max_stream_size`` caps every stream (bytes; None: no cap): an append that
    would pass it raises StreamTooLarge and stores nothing. The check runs in
    the append's own statement, under the row lock, so concurrent appends
    cannot pass it together.
    """

    driver: str = ""
    max_stream_size: int | None = DEFAULT_MAX_STREAM_SIZE

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _fetch(self, query: str, *args: object) -> list[Row]:
        """Run the named query; return every row. Translates driver errors."""

    async def _fetchrow(self, query: str, *args: object) -> Row | None:
        rows = await self._fetch(query, *args)
        return rows[0] if rows else None

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
    ) -> StreamInfo:
        metadata_json = v.new_stream(
            initial=status,
            client_id=client_id,
            path=path,
            content_type=content_type,
            meta=metadata,
            owner=owner,
            expires_at=expires_at,
        )
        try:
            row = await self._fetchrow(
                "create_stream",
                client_id,
                path,
                content_type,
                str(status),
                metadata_json,
                owner,
                expires_at,
            )
        except UniqueViolation as exc:
            if exc.constraint == "streams_client_id_key" and client_id is not None:
                raise ClientIdTaken(client_id) from None
            if exc.constraint == "streams_path_key" and path is not None:
                raise PathTaken(path) from None
            raise
        assert row is not None
        return _stream(row)

    async def get_stream(self, stream_id: uuid.UUID) -> StreamInfo:
        row = await self._fetchrow("get_stream", v.stream_id(stream_id))
        if row is None:
            raise StreamNotFound(stream_id)
        return _stream(row)

    async def get_stream_by_client_id(self, client_id: str) -> StreamInfo:
        v.key("client_id", client_id)
        row = await self._fetchrow("get_stream_by_client_id", client_id)
        if row is None:
            raise StreamNotFound(client_id)
        return _stream(row)

    async def get_stream_by_path(self, path: str) -> StreamInfo:
        v.key("path", path)
        row = await self._fetchrow("get_stream_by_path", path)
        if row is None:
            raise StreamNotFound(path)
        return _stream(row)

    async def append(
        self,
        stream_id: uuid.UUID,
        data: bytes,
        *,
        offset: int,
        finish: StreamStatus | None = None,
        reason: str | None = None,
    ) -> int:
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
        cap = self.max_stream_size
        row = await self._fetchrow(
            "append",
            stream_id,
            offset,
            data,
            None if finish is None else str(finish),
            reason,
            cap,
        )
        if row is not None:
            return cast(int, row[0])
        state = await self._fetchrow("append_state", stream_id)
        if state is None:
            raise StreamNotFound(stream_id)
        size, status, closed = cast(int, state[0]), StreamStatus(cast(str, state[1])), state[2]
        if closed:
            raise StreamClosed(stream_id, status)
        if size == offset and cap is not None and size + len(data) > cap:
            raise StreamTooLarge(stream_id, size, len(data), cap)
        raise OffsetConflict(stream_id, offset, size)

    async def read(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadResult:
        stream_id = v.stream_id(stream_id)
        if isinstance(offset, int) and offset < 0:
            raise InvalidOffset(stream_id, offset, 0)
        v.integer("offset", offset)
        if max_bytes is not None:
            # Any larger page is "to the end": clamp so offset + max_bytes stays a bigint.
            max_bytes = min(v.integer("max_bytes", max_bytes, minimum=1), v.INT8_MAX - offset)
        rows = await self._fetch("read", stream_id, offset, max_bytes)
        if not rows:
            raise StreamNotFound(stream_id)
        row = rows[0]
        size = cast(int, row[0])
        if offset > size:
            raise InvalidOffset(stream_id, offset, size)
        data = b"".join(cast(bytes, r[4]) for r in rows if r[4] is not None)
        return ReadResult(
            stream_id=stream_id,
            data=data,
            offset=offset,
            next_offset=offset + len(data),
            size=size,
            status=StreamStatus(cast(str, row[1])),
            closed=cast(bool, row[2]),
            at_boundary=row[3] is True,
        )

    async def claim(self, stream_id: uuid.UUID) -> StreamInfo:
        stream_id = v.stream_id(stream_id)
        row = await self._fetchrow("claim", stream_id)
        if row is not None:
            return _stream(row)
        current = await self.get_stream(stream_id)
        raise InvalidTransition(stream_id, current.status, StreamStatus.STREAMING, current.size)

    async def set_status(
        self, stream_id: uuid.UUID, status: StreamStatus, *, reason: str | None = None
    ) -> StreamInfo:
        stream_id = v.stream_id(stream_id)
        status = v.status(status)
        v.optional_text("reason", reason)
        allowed_from = sorted(str(s) for s, targets in TRANSITIONS.items() if status in targets)
        row = await self._fetchrow("set_status", stream_id, str(status), reason, allowed_from)
        if row is not None:
            return _stream(row)
        current = await self.get_stream(stream_id)
        raise InvalidTransition(stream_id, current.status, status, current.size)

    async def heartbeat(self, stream_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not stream_ids:
            return set()
        rows = await self._fetch("heartbeat", [v.stream_id(i) for i in stream_ids])
        return {cast(uuid.UUID, row[0]) for row in rows}

    async def find_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        v.sweep_args(stale_after, limit)
        return [_stream(r) for r in await self._fetch("find_stale", float(stale_after), limit)]

    async def timeout_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        v.sweep_args(stale_after, limit)
        rows = await self._fetch("timeout_stale", float(stale_after), TIMEOUT_MESSAGE, limit)
        return [_stream(r) for r in rows]

    async def timeout_pending(self, pending_after: float, limit: int = 100) -> list[StreamInfo]:
        v.sweep_args(pending_after, limit)
        message = pending_timeout_message(pending_after)
        rows = await self._fetch("timeout_pending", float(pending_after), message, limit)
        return [_stream(r) for r in rows]

    async def delete_stream(self, stream_id: uuid.UUID) -> None:
        if await self.ds_delete(stream_id) == "not_found":
            raise StreamNotFound(stream_id)

    # -- Durable Streams ---------------------------------------------------------

    async def ds_lookup(
        self, path: str | None, *, stream_id: uuid.UUID | None = None, touch: bool = False
    ) -> DurableLookup | None:
        if (path is None) == (stream_id is None):
            raise InvalidInput("look a stream up by path or by id")
        if path is not None:
            v.key("path", path)
        row = await self._fetchrow(
            "ds_lookup", path, touch, None if stream_id is None else v.stream_id(stream_id)
        )
        if row is None:
            return None
        return DurableLookup(
            stream=_stream(row), expired=cast(bool, row[21]), referenced=row[22] is True
        )

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
        if not v.key("path", path):
            raise InvalidInput("a stream path must not be empty")
        if not v.text("content_type", content_type):
            raise InvalidInput("content_type must not be empty")
        if ttl_seconds is not None and expires_at is not None:
            raise InvalidInput("give a TTL or an expiry time, not both")
        v.ttl(ttl_seconds)
        v.optional_moment("expires_at", expires_at)
        v.optional_integer("fork_offset", fork_offset)
        v.optional_integer("fork_sub_offset", fork_sub_offset)
        if source is None and (fork_offset is not None or fork_sub_offset or prefix):
            raise InvalidInput("a fork offset needs a source stream")
        data, prefix = bytes(data), bytes(prefix)
        size = (fork_offset or 0) + len(prefix) + len(data)
        if self.max_stream_size is not None and size > self.max_stream_size:
            raise StreamTooLarge(path, 0, size, self.max_stream_size)
        row = await self._fetchrow(
            "ds_create",
            path,
            content_type,
            ttl_seconds,
            expires_at,
            closed,
            data,
            None if source is None else v.stream_id(source),
            fork_offset,
            fork_sub_offset,
            prefix,
        )
        assert row is not None
        return CreateOutcome(cast(str, row[0])), cast("uuid.UUID | None", row[1])

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
        if not data and not close:
            raise InvalidInput("an append must carry data or close the stream")
        v.key("path", path)
        v.text("media_type", media_type)
        v.optional_text("stream_seq", stream_seq)
        if producer is not None:
            v.key("producer id", producer.id)
            v.integer("producer epoch", producer.epoch)
            v.integer("producer seq", producer.seq)
        data = bytes(data)
        row = await self._fetchrow(
            "ds_append",
            path,
            data,
            media_type.lower(),
            close,
            stream_seq,
            None if producer is None else producer.id,
            None if producer is None else producer.epoch,
            None if producer is None else producer.seq,
            self.max_stream_size,
        )
        assert row is not None
        size = row[2]
        if row[0] == "too_large":
            assert self.max_stream_size is not None
            raise StreamTooLarge(path, cast(int, size), len(data), self.max_stream_size)
        return AppendResult(
            outcome=AppendOutcome(cast(str, row[0])),
            stream_id=cast("uuid.UUID | None", row[1]),
            size=cast(int, size) if size is not None else 0,
            closed=row[3] is True,
            epoch=cast("int | None", row[4]),
            seq=cast("int | None", row[5]),
            expected_seq=cast("int | None", row[6]),
        )

    async def ds_delete(self, stream_id: uuid.UUID) -> str:
        try:
            stream_id = v.stream_id(stream_id)
        except StreamNotFound:
            return "not_found"
        row = await self._fetchrow("delete_stream", stream_id)
        assert row is not None
        return cast(str, row[0])

    async def collect_garbage(self, limit: int = 100) -> int:
        v.integer("limit", limit, minimum=1, maximum=v.INT4_MAX)
        row = await self._fetchrow("ds_collect", limit)
        assert row is not None
        return cast(int, row[0])


def _stream(row: Row) -> StreamInfo:
    """A ``pts.streams`` row, in the column order of sql/queries.sql, as a StreamInfo."""
    metadata = json.loads(cast(str, row[14])) if row[14] is not None else {}
    return StreamInfo(
        id=cast(uuid.UUID, row[0]),
        client_id=cast("str | None", row[1]),
        path=cast("str | None", row[2]),
        content_type=cast(str, row[3]),
        status=StreamStatus(cast(str, row[4])),
        size=cast(int, row[5]),
        closed=cast(bool, row[6]),
        abort_reason=cast("str | None", row[7]),
        error=cast("str | None", row[8]),
        created_at=cast(datetime, row[9]),
        updated_at=cast(datetime, row[10]),
        heartbeat_at=cast("datetime | None", row[11]),
        finished_at=cast("datetime | None", row[12]),
        expires_at=cast("datetime | None", row[13]),
        metadata=metadata,
        owner=cast("str | None", row[15]),
        ttl_seconds=cast("int | None", row[16]),
        forked_from=cast("uuid.UUID | None", row[17]),
        fork_offset=cast("int | None", row[18]),
        fork_sub_offset=cast("int | None", row[19]),
        deleted_at=cast("datetime | None", row[20]),
    )

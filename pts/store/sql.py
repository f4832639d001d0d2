"""The SQL store: :class:`~pts.store.base.Store` implemented once for both drivers.

Each driver (:mod:`pts.store.asyncpg_store`, :mod:`pts.store.psycopg_store`)
adds only a pool and the one primitive of :class:`~pts.store.runner.QueryRunner`; the queries
are those of ``sql/queries.sql``, the rows are read by column name.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import cast

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
from pts.models import Metadata, ReadResult, StreamInfo, StreamStatus
from pts.store import validate as v
from pts.store.base import (
    DEFAULT_CONTENT_TYPE,
    TIMEOUT_MESSAGE,
    TRANSITIONS,
    Store,
    pending_timeout_message,
)
from pts.store.compaction import CompactionSQL
from pts.store.durable_sql import DurableStreamsSQL
from pts.store.rows import stream_info
from pts.store.runner import UniqueViolation


class SQLStore(DurableStreamsSQL, CompactionSQL, Store):
    """The shared implementation of :class:`Store` over a driver's ``_fetch``.

    Every method validates its arguments (:mod:`pts.store.validate`) before any
    SQL: what Postgres cannot store is an InvalidInput, never a driver error.
    The operations are documented on :class:`Store`.

    ``max_stream_size`` caps every stream (bytes; None: no cap): an append that
    would pass it raises StreamTooLarge and stores nothing. The check runs in
    the append's own statement, under the row lock, so concurrent appends
    cannot pass it together.
    """

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
        return stream_info(row)

    async def get_stream(self, stream_id: uuid.UUID) -> StreamInfo:
        row = await self._fetchrow("get_stream", v.stream_id(stream_id))
        if row is None:
            raise StreamNotFound(stream_id)
        return stream_info(row)

    async def get_stream_by_client_id(self, client_id: str) -> StreamInfo:
        v.key("client_id", client_id)
        row = await self._fetchrow("get_stream_by_client_id", client_id)
        if row is None:
            raise StreamNotFound(client_id)
        return stream_info(row)

    async def get_stream_by_path(self, path: str) -> StreamInfo:
        v.key("path", path)
        row = await self._fetchrow("get_stream_by_path", path)
        if row is None:
            raise StreamNotFound(path)
        return stream_info(row)

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
            return cast(int, row["size"])
        state = await self._fetchrow("append_state", stream_id)
        if state is None:
            raise StreamNotFound(stream_id)
        size, status = cast(int, state["size"]), StreamStatus(cast(str, state["status"]))
        if state["closed"]:
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
        size = cast(int, row["size"])
        if offset > size:
            raise InvalidOffset(stream_id, offset, size)
        data = b"".join(cast(bytes, r["data"]) for r in rows if r["data"] is not None)
        return ReadResult(
            stream_id=stream_id,
            data=data,
            offset=offset,
            next_offset=offset + len(data),
            size=size,
            status=StreamStatus(cast(str, row["status"])),
            closed=cast(bool, row["closed"]),
            # The row that holds `offset` says whether a chunk begins there.
            at_boundary=any(r["at_boundary"] is True for r in rows),
        )

    async def claim(self, stream_id: uuid.UUID) -> StreamInfo:
        stream_id = v.stream_id(stream_id)
        row = await self._fetchrow("claim", stream_id)
        if row is not None:
            return stream_info(row)
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
            return stream_info(row)
        current = await self.get_stream(stream_id)
        raise InvalidTransition(stream_id, current.status, status, current.size)

    async def heartbeat(self, stream_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not stream_ids:
            return set()
        rows = await self._fetch("heartbeat", [v.stream_id(i) for i in stream_ids])
        return {cast(uuid.UUID, row["id"]) for row in rows}

    async def find_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        v.sweep_args(stale_after, limit)
        return [stream_info(r) for r in await self._fetch("find_stale", float(stale_after), limit)]

    async def timeout_stale(self, stale_after: float, limit: int = 100) -> list[StreamInfo]:
        v.sweep_args(stale_after, limit)
        rows = await self._fetch("timeout_stale", float(stale_after), TIMEOUT_MESSAGE, limit)
        return [stream_info(r) for r in rows]

    async def timeout_pending(self, pending_after: float, limit: int = 100) -> list[StreamInfo]:
        v.sweep_args(pending_after, limit)
        message = pending_timeout_message(pending_after)
        rows = await self._fetch("timeout_pending", float(pending_after), message, limit)
        return [stream_info(r) for r in rows]

    async def delete_stream(self, stream_id: uuid.UUID) -> None:
        if await self.ds_delete(stream_id) == "not_found":
            raise StreamNotFound(stream_id)

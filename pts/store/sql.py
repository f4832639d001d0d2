"""The SQL store: :class:`~pts.store.base.Store` implemented once for both drivers.

Each driver (:mod:`pts.store.asyncpg_store`, :mod:`pts.store.psycopg_store`)
adds only a pool and the one primitive of :class:`~pts.store.runner.QueryRunner`; the queries
are those of ``sql/queries.sql``, the rows are read by column name.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TypeAlias, cast

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
from pts.models import Metadata, ReadParts, ReadResult, StreamInfo, StreamStatus
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
from pts.store.group_commit import GroupCommit
from pts.store.retention_sql import RetentionSQL
from pts.store.rows import stream_info
from pts.store.runner import UniqueViolation

_Append: TypeAlias = tuple[uuid.UUID, int, bytes, "str | None", "str | None"]
"""A driven append as the queue holds it: stream, offset, bytes, final status, reason."""


class SQLStore(DurableStreamsSQL, RetentionSQL, CompactionSQL, Store):
    """The shared implementation of :class:`Store` over a driver's ``_fetch``.

    Every method validates its arguments (:mod:`pts.store.validate`) before any
    SQL: what Postgres cannot store is an InvalidInput, never a driver error.
    The operations are documented on :class:`Store`.

    ``max_stream_size`` caps every stream (bytes; None: no cap): an append that
    would pass it raises StreamTooLarge and stores nothing. The check runs in
    the append's own statement, under the row lock, so concurrent appends
    cannot pass it together.

    Appends are group-committed (:mod:`pts.store.group_commit`): those that
    arrive while a commit is in flight share the next transaction, each answered
    on its own once its data committed.
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
        ttl: float | None = None,
    ) -> StreamInfo:
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
                None if ttl is None else float(ttl),
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
        item = (stream_id, offset, data, None if finish is None else str(finish), reason)
        size = await self.append_queue.submit(item)
        if size is not None:
            return size
        state = await self._fetchrow("append_state", stream_id)
        if state is None:
            raise StreamNotFound(stream_id)
        size, status = cast(int, state["size"]), StreamStatus(cast(str, state["status"]))
        if state["closed"]:
            raise StreamClosed(stream_id, status)
        if size == offset and cap is not None and size + len(data) > cap:
            raise StreamTooLarge(stream_id, size, len(data), cap)
        raise OffsetConflict(stream_id, offset, size)

    @functools.cached_property
    def append_queue(self) -> GroupCommit[_Append, int | None]:
        """The group-commit queue of :meth:`append`: each answer the stream's new
        size, or None when the append matched nothing (then :meth:`append` asks why)."""
        return GroupCommit(
            self._append_batch,
            self._append_one,
            key=lambda item: item[0],
            size=lambda item: len(item[2]),
            max_in_flight=self.batches_in_flight,
        )

    async def _append_one(self, item: _Append) -> int | None:
        row = await self._fetchrow("append", *item, self.max_stream_size)
        return None if row is None else cast(int, row["size"])

    async def _append_batch(self, items: Sequence[_Append]) -> list[int | None]:
        columns = list(zip(*items, strict=True))
        rows = await self._fetch(
            "append_batch",
            *(list(column) for column in columns),
            self.max_stream_size,
            self.notify_v1,
        )
        sizes: list[int | None] = [None] * len(items)
        for row in rows:
            sizes[cast(int, row["ord"]) - 1] = cast("int | None", row["size"])
        return sizes

    @property
    def append_transactions(self) -> int:
        """Statements (each one transaction) the group commits ran for appends so far,
        the flushers' and the protocol's: one per batch, one per append run alone."""
        return self.append_queue.stats.transactions + self.ds_append_queue.stats.transactions

    async def drain_appends(self) -> None:
        """Wait until every append submitted has its answer (before the pool closes)."""
        await self.append_queue.drain()
        await self.ds_append_queue.drain()

    async def read(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadResult:
        return (await self.read_parts(stream_id, offset, max_bytes)).joined()

    async def read_parts(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadParts:
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
        # One part per stored row: Postgres sends the rows, not one joined copy.
        parts = tuple(cast(bytes, r["data"]) for r in rows if r["data"] is not None)
        return ReadParts(
            stream_id=stream_id,
            parts=parts,
            offset=offset,
            next_offset=offset + sum(len(part) for part in parts),
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

    async def request_stop(self, stream_id: uuid.UUID, reason: str | None = None) -> bool:
        stream_id = v.stream_id(stream_id)
        v.optional_text("reason", reason)
        return await self._fetchrow("request_stop", stream_id, reason) is not None

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

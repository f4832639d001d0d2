"""The Durable Streams operations of the SQL store: paths, TTLs, forks, producers.

The protocol's rules run in the database (``pts.ds_*`` functions, under the
stream's row lock); this side checks the arguments and turns rows into records.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeAlias, cast

from pts.errors import InvalidInput, StreamNotFound, StreamTooLarge
from pts.models import AppendOutcome, AppendResult, CreateOutcome, DurableLookup, Producer
from pts.store import validate as v
from pts.store.group_commit import GroupCommit
from pts.store.rows import Row, stream_info
from pts.store.runner import QueryRunner

_DSAppend: TypeAlias = tuple[
    str, bytes, str, bool, "str | None", "str | None", "int | None", "int | None"
]
"""A protocol append as the queue holds it: the arguments of ``pts.ds_append_v2``
but the size cap (path, bytes, media type, close, Stream-Seq, producer, epoch, seq)."""
_DS_COLUMNS = ("outcome", "stream_id", "size", "closed", "epoch", "seq", "expected_seq")


class DurableStreamsSQL(QueryRunner):
    """``ds_lookup``, ``ds_create``, ``ds_append``, ``ds_delete`` and ``collect_garbage``
    of :class:`~pts.store.base.Store`, in SQL."""

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
        stream = stream_info(row)
        if row["renewed_expires_at"] is not None:  # the TTL was renewed
            stream = replace(stream, expires_at=cast(datetime, row["renewed_expires_at"]))
        return DurableLookup(
            stream=stream,
            expired=cast(bool, row["expired"]),
            referenced=row["referenced"] is True,
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
        return CreateOutcome(cast(str, row["outcome"])), cast("uuid.UUID | None", row["stream_id"])

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
        row = await self.ds_append_queue.submit(
            (
                path,
                data,
                media_type.lower(),
                close,
                stream_seq,
                None if producer is None else producer.id,
                None if producer is None else producer.epoch,
                None if producer is None else producer.seq,
            )
        )
        size = row["size"]
        if row["outcome"] == "too_large":
            assert self.max_stream_size is not None
            raise StreamTooLarge(path, cast(int, size), len(data), self.max_stream_size)
        return AppendResult(
            outcome=AppendOutcome(cast(str, row["outcome"])),
            stream_id=cast("uuid.UUID | None", row["stream_id"]),
            size=cast(int, size) if size is not None else 0,
            closed=row["closed"] is True,
            epoch=cast("int | None", row["epoch"]),
            seq=cast("int | None", row["seq"]),
            expected_seq=cast("int | None", row["expected_seq"]),
        )

    @functools.cached_property
    def ds_append_queue(self) -> GroupCommit[_DSAppend, Row]:
        """The group-commit queue of :meth:`ds_append`: each answer the row of
        ``pts.ds_append_v2`` (outcome, stream_id, size, closed, epoch, seq, expected_seq)."""
        return GroupCommit(
            self._ds_append_batch,
            self._ds_append_one,
            key=lambda item: item[0],
            size=lambda item: len(item[1]),
            max_in_flight=self.batches_in_flight,
        )

    async def _ds_append_one(self, item: _DSAppend) -> Row:
        row = await self._fetchrow("ds_append", *item, self.max_stream_size)
        assert row is not None
        return row

    async def _ds_append_batch(self, items: Sequence[_DSAppend]) -> list[Row]:
        columns = list(zip(*items, strict=True))
        rows = await self._fetch(
            "ds_append_batch",
            *(list(column) for column in columns),
            self.max_stream_size,
            self.notify_v1,
        )
        answers: list[Row | None] = [None] * len(items)
        for row in rows:
            answers[cast(int, row["ord"]) - 1] = {c: row[c] for c in _DS_COLUMNS}
        assert all(answer is not None for answer in answers), "an append got no answer"
        return cast(list[Row], answers)

    async def ds_delete(self, stream_id: uuid.UUID) -> str:
        try:
            stream_id = v.stream_id(stream_id)
        except StreamNotFound:
            return "not_found"
        row = await self._fetchrow("delete_stream", stream_id)
        assert row is not None
        return cast(str, row["outcome"])

    async def collect_garbage(self, limit: int = 100) -> int:
        v.integer("limit", limit, minimum=1, maximum=v.INT4_MAX)
        row = await self._fetchrow("ds_collect", limit)
        assert row is not None
        return cast(int, row["collected"])

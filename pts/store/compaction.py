"""Compaction in SQL: a finished stream's chunk rows merged into few large rows.

The merge runs in the database (``pts.compact_v1``, sql/migrations/0005_compaction.sql),
in one statement under the stream's row lock; this side checks the arguments.
"""

from __future__ import annotations

import uuid
from typing import cast

from pts.errors import StreamNotFound
from pts.store import validate as v
from pts.store.base import COMPACT_ROW_BYTES
from pts.store.runner import QueryRunner

__all__ = ["CompactionSQL", "merged_row_count"]

MAX_COMPACT_ROW_BYTES = 64 << 20
"""The largest row size compaction may aim for: a merged row holds less than twice
it, far below Postgres's 1 GB limit on a value."""


def merged_row_count(starts: list[int], sizes: list[int], row_bytes: int) -> int:
    """How many rows a stream's chunks (by start offset and size) become: those smaller
    than ``row_bytes`` that start in one ``row_bytes`` window of offsets merge into
    one, larger ones stay alone (the rule ``pts.compact_v1`` applies)."""
    windows = {
        start // row_bytes for start, size in zip(starts, sizes, strict=True) if size < row_bytes
    }
    return len(windows) + sum(1 for size in sizes if size >= row_bytes)


def compact_row_bytes(value: int) -> int:
    """``value`` checked as a compaction row size (bytes)."""
    return v.integer("compact_row_bytes", value, minimum=1, maximum=MAX_COMPACT_ROW_BYTES)


class CompactionSQL(QueryRunner):
    """``compact`` and ``compact_finished`` of :class:`~pts.store.base.Store`, in SQL.

    ``compact_row_bytes`` is the size merged rows aim for (default
    :data:`~pts.store.base.COMPACT_ROW_BYTES`); set it on the store to change it.
    """

    compact_row_bytes: int = COMPACT_ROW_BYTES

    async def compact(self, stream_id: uuid.UUID) -> int:
        row_bytes = compact_row_bytes(self.compact_row_bytes)
        try:
            stream_id = v.stream_id(stream_id)
        except StreamNotFound:
            return 0  # as for a stream that is gone: nothing to merge
        row = await self._fetchrow("compact", stream_id, row_bytes)
        assert row is not None
        return cast(int, row["removed"])

    async def compact_finished(self, limit: int = 10) -> int:
        v.integer("limit", limit, minimum=1, maximum=v.INT4_MAX)
        row = await self._fetchrow(
            "compact_finished", limit, compact_row_bytes(self.compact_row_bytes)
        )
        assert row is not None
        return cast(int, row["streams"])

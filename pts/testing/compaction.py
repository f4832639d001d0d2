"""Compaction in the memory store: the SQL stores' counts, the same reads."""

from __future__ import annotations

import uuid

from pts.errors import StreamNotFound
from pts.store import validate as v
from pts.store.base import COMPACT_ROW_BYTES
from pts.store.compaction import compact_row_bytes, merged_row_count
from pts.testing.rows import StoredStream

__all__ = ["MemoryCompaction"]


class MemoryCompaction:
    """``compact`` and ``compact_finished`` over the memory store's streams.

    Memory has no rows to merge: the chunks stay apart (every read is the same
    either way, as in SQL), and each call reports the rows the SQL stores'
    merge would remove (:func:`~pts.store.compaction.merged_row_count`).
    """

    compact_row_bytes: int = COMPACT_ROW_BYTES
    _streams: dict[uuid.UUID, StoredStream]

    def _compact_one(self, stream: StoredStream) -> int:
        if not stream.info.closed:
            return 0
        row_bytes = compact_row_bytes(self.compact_row_bytes)
        sizes = [len(chunk) for chunk in stream.chunks]
        rows = merged_row_count(stream.starts, sizes, row_bytes)
        removed = max((stream.rows or len(stream.chunks)) - rows, 0)
        stream.rows, stream.compacted = rows, True
        return removed

    async def compact(self, stream_id: uuid.UUID) -> int:
        """Merge a finished stream's chunk rows (as counted here); how many went."""
        try:
            stream = self._streams.get(v.stream_id(stream_id))
        except StreamNotFound:
            return 0
        return 0 if stream is None else self._compact_one(stream)

    async def compact_finished(self, limit: int = 10) -> int:
        """Compact up to ``limit`` finished streams not compacted yet (oldest first)."""
        v.integer("limit", limit, minimum=1, maximum=v.INT4_MAX)
        todo = [s for s in self._streams.values() if s.info.closed and not s.compacted]
        todo.sort(key=lambda s: s.info.finished_at or s.info.updated_at)
        for stream in todo[:limit]:
            self._compact_one(stream)
        return len(todo[:limit])

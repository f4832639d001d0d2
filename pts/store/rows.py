"""Result rows, read by column name, and the records pts builds from them.

Both drivers hand rows over as something indexed by column name: asyncpg's
``Record`` as it is, psycopg's through a dict row factory. The column names
are those of ``sql/queries.sql`` (its ``stream_columns`` fragment for a stream).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Protocol, cast

from pts.models import StreamInfo, StreamStatus


class Row(Protocol):
    """A result row: asyncpg's Record and psycopg's dict rows both index by column name."""

    def __getitem__(self, column: str, /) -> object: ...


def stream_info(row: Row) -> StreamInfo:
    """A row with the ``stream_columns`` of sql/queries.sql, as a StreamInfo."""
    metadata = row["metadata"]
    return StreamInfo(
        id=cast(uuid.UUID, row["id"]),
        client_id=cast("str | None", row["client_id"]),
        path=cast("str | None", row["path"]),
        content_type=cast(str, row["content_type"]),
        status=StreamStatus(cast(str, row["status"])),
        size=cast(int, row["size"]),
        closed=cast(bool, row["closed"]),
        abort_reason=cast("str | None", row["abort_reason"]),
        error=cast("str | None", row["error"]),
        created_at=cast(datetime, row["created_at"]),
        updated_at=cast(datetime, row["updated_at"]),
        heartbeat_at=cast("datetime | None", row["heartbeat_at"]),
        finished_at=cast("datetime | None", row["finished_at"]),
        expires_at=cast("datetime | None", row["expires_at"]),
        # Selected as text, so that both drivers hand over the same thing.
        metadata=json.loads(cast(str, metadata)) if metadata is not None else {},
        owner=cast("str | None", row["owner"]),
        ttl_seconds=cast("int | None", row["ttl_seconds"]),
        forked_from=cast("uuid.UUID | None", row["forked_from"]),
        fork_offset=cast("int | None", row["fork_offset"]),
        fork_sub_offset=cast("int | None", row["fork_sub_offset"]),
        deleted_at=cast("datetime | None", row["deleted_at"]),
    )

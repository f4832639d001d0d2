"""The Durable Streams operations, which the in-memory store does not serve."""

from __future__ import annotations

import uuid
from datetime import datetime

from pts.errors import DurableStreamsNotSupported
from pts.models import AppendResult, CreateOutcome, DurableLookup, Producer

__all__ = ["DurableStreamsNotSupported", "DurableStreamsRefused"]


class DurableStreamsRefused:
    """``ds_lookup``, ``ds_create`` and ``ds_append``, each raising
    :class:`DurableStreamsNotSupported`: a plain refusal, never a silent stub."""

    async def ds_lookup(
        self, path: str | None, *, stream_id: uuid.UUID | None = None, touch: bool = False
    ) -> DurableLookup | None:
        """Not served: raises DurableStreamsNotSupported."""
        raise DurableStreamsNotSupported("ds_lookup")

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
        """Not served: raises DurableStreamsNotSupported."""
        raise DurableStreamsNotSupported("ds_create")

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
        """Not served: raises DurableStreamsNotSupported."""
        raise DurableStreamsNotSupported("ds_append")

"""Records pts hands out: stream status, stream metadata, read results."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"
Metadata: TypeAlias = "dict[str, JSONValue]"


class StreamStatus(enum.StrEnum):
    """Where a stream is in its life. The last four are final: a finished stream never reopens."""

    PENDING = "pending"
    STREAMING = "streaming"
    DONE = "done"
    ERROR = "error"
    TIMEOUT = "timeout"
    ABORTED = "aborted"

    @property
    def finished(self) -> bool:
        """True for done, error, timeout and aborted."""
        return self not in (StreamStatus.PENDING, StreamStatus.STREAMING)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream's metadata, as stored in ``pts.streams``."""

    id: uuid.UUID
    status: StreamStatus
    size: int
    """Bytes stored so far: the offset the next append must name."""
    closed: bool
    content_type: str
    client_id: str | None
    path: str | None
    abort_reason: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    heartbeat_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    metadata: Metadata = field(default_factory=dict)
    owner: str | None = None

    @property
    def finished(self) -> bool:
        """True once the stream is done, errored, timed out or aborted."""
        return self.status.finished


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Bytes read from a stream, from ``offset`` up to ``next_offset``."""

    stream_id: uuid.UUID
    data: bytes
    offset: int
    next_offset: int
    size: int
    """The stream's size when read; ``next_offset == size`` means the reader is caught up."""
    status: StreamStatus
    closed: bool

    @property
    def up_to_date(self) -> bool:
        """True when this read reached the end of what the stream held at the time."""
        return self.next_offset >= self.size


@dataclass(frozen=True, slots=True)
class StreamBody:
    """A stream's whole text so far, with its state (what ``get_stream_body`` returns)."""

    stream: StreamInfo
    text: str

    @property
    def id(self) -> uuid.UUID:
        return self.stream.id

    @property
    def status(self) -> StreamStatus:
        return self.stream.status

    @property
    def size(self) -> int:
        """Bytes persisted so far."""
        return self.stream.size

    @property
    def done(self) -> bool:
        """True once the stream is finished (done, error, timeout or aborted)."""
        return self.stream.finished

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
    ttl_seconds: int | None = None
    """A sliding time-to-live (Durable Streams ``Stream-TTL``): access renews ``expires_at``."""
    forked_from: uuid.UUID | None = None
    """For a fork: the stream whose bytes below ``fork_offset`` it shares."""
    fork_offset: int | None = None
    fork_sub_offset: int | None = None
    deleted_at: datetime | None = None
    """Set on a soft-deleted stream: deleted while live forks still read its bytes."""

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
    at_boundary: bool = True
    """Whether ``offset`` is where a stored chunk starts (or the end of the stream)."""

    @property
    def up_to_date(self) -> bool:
        """True when this read reached the end of what the stream held at the time."""
        return self.next_offset >= self.size


@dataclass(frozen=True, slots=True)
class ReadParts:
    """A read (:meth:`~pts.store.base.Store.read_parts`) whose bytes stay in the pieces
    the store holds them in: ``data`` joins them into what :meth:`read` returns.

    What a large HTTP read sends piece by piece: joining megabytes into one
    buffer costs a copy of each byte (and, in fresh memory, a page fault per
    4 KiB), the largest single cost of a catch-up read after Postgres's own.
    """

    stream_id: uuid.UUID
    parts: tuple[bytes, ...]
    offset: int
    next_offset: int
    size: int
    status: StreamStatus
    closed: bool
    at_boundary: bool = True

    @property
    def data(self) -> bytes:
        """The bytes, joined (a copy unless there is one part)."""
        return b"".join(self.parts)

    @classmethod
    def of(cls, read: ReadResult) -> ReadParts:
        """``read`` as one part (none if it holds no bytes)."""
        return cls(
            read.stream_id,
            (read.data,) if read.data else (),
            read.offset,
            read.next_offset,
            read.size,
            read.status,
            read.closed,
            read.at_boundary,
        )

    def joined(self) -> ReadResult:
        """The :class:`ReadResult` of the same read (its parts joined)."""
        return ReadResult(
            self.stream_id,
            self.data,
            self.offset,
            self.next_offset,
            self.size,
            self.status,
            self.closed,
            self.at_boundary,
        )

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


# -- Durable Streams ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DurableLookup:
    """A stream found by its Durable Streams path, judged by the database's clock."""

    stream: StreamInfo
    expired: bool
    """Its TTL or Expires-At has passed: to the protocol it no longer exists."""
    referenced: bool
    """For a soft-deleted stream: live forks still read its bytes (so it answers 410)."""

    @property
    def gone(self) -> bool:
        """Soft-deleted and still held by live forks: the protocol's 410."""
        return self.stream.deleted_at is not None and self.referenced

    @property
    def exists(self) -> bool:
        """Neither expired nor deleted."""
        return not self.expired and self.stream.deleted_at is None


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's request: ``Producer-Id``, ``-Epoch``, ``-Seq``."""

    id: str
    epoch: int
    seq: int


class CreateOutcome(enum.StrEnum):
    """What ``ds_create`` did (see ``pts.ds_create_v1`` in the schema)."""

    CREATED = "created"
    EXISTS = "exists"
    GONE = "gone"
    SOURCE_NOT_FOUND = "source_not_found"
    SOURCE_GONE = "source_gone"
    BAD_FORK_OFFSET = "bad_fork_offset"


class AppendOutcome(enum.StrEnum):
    """What ``ds_append`` did (see ``pts.ds_append_v1`` in the schema)."""

    APPENDED = "appended"
    DUPLICATE = "duplicate"
    NOT_FOUND = "not_found"
    GONE = "gone"
    DRIVEN = "driven"
    CLOSED = "closed"
    CONTENT_TYPE = "content_type"
    STALE_EPOCH = "stale_epoch"
    BAD_EPOCH_SEQ = "bad_epoch_seq"
    SEQ_GAP = "seq_gap"
    SEQ_CONFLICT = "seq_conflict"


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of a Durable Streams append, with the state to report."""

    outcome: AppendOutcome
    stream_id: uuid.UUID | None
    size: int
    """The stream's size after the request (its next offset)."""
    closed: bool
    epoch: int | None = None
    """The producer epoch to report (the current one for a stale epoch)."""
    seq: int | None = None
    """The producer sequence number to report (the last accepted one for a duplicate)."""
    expected_seq: int | None = None
    """For a sequence gap: the sequence number the stream expected."""

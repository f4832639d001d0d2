"""The memory store's rows, clock and small rules (as the SQL stores apply them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pts.models import StreamInfo, StreamStatus

__all__ = [
    "Clock",
    "StoreClock",
    "StoredStream",
    "collectable",
    "expiry",
    "prunable",
    "reason_fields",
    "stale",
    "unclaimed",
]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""


class StoreClock:
    """Times a store records: never backwards, always forwards (by 1 µs at least),
    as Postgres' ``now()`` from one transaction to the next."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.last = datetime.min.replace(tzinfo=UTC)

    def now(self) -> datetime:
        """The next time to record."""
        self.last = max(self.clock().astimezone(UTC), self.last + timedelta(microseconds=1))
        return self.last


@dataclass
class StoredStream:
    """One stream: its row (a StreamInfo, replaced on each change) and its chunks."""

    info: StreamInfo
    starts: list[int] = field(default_factory=list)
    """Each chunk's start offset, ascending (for bisect)."""
    chunks: list[bytes] = field(default_factory=list)
    rows: int | None = None
    """How many rows the SQL stores would hold after compaction (None: one per chunk)."""
    compacted: bool = False

    @property
    def heartbeat_at(self) -> datetime:
        """For sorting streaming streams, which always have one."""
        assert self.info.heartbeat_at is not None
        return self.info.heartbeat_at


def reason_fields(status: StreamStatus, reason: str | None) -> dict[str, object]:
    """Where a reason goes: the abort reason (aborted) or the error (error, timeout)."""
    if status is StreamStatus.ABORTED:
        return {"abort_reason": reason}
    if status in (StreamStatus.ERROR, StreamStatus.TIMEOUT):
        return {"error": reason}
    return {}


def expiry(now: datetime, expires_at: datetime | None, ttl: float | None) -> datetime | None:
    """A new stream's ``expires_at``: as given, or ``ttl`` seconds from ``now``."""
    if ttl is not None:
        return now + timedelta(seconds=ttl)
    return None if expires_at is None else expires_at.astimezone(UTC)


def collectable(streams: Iterable[StoredStream], now: datetime) -> list[StreamInfo]:
    """The expired streams garbage collection removes: not while they are ``streaming``."""
    return [
        s.info
        for s in streams
        if s.info.expires_at is not None
        and s.info.expires_at <= now
        and s.info.status is not StreamStatus.STREAMING
    ]


def prunable(streams: Iterable[StoredStream], finished_before: datetime) -> list[StreamInfo]:
    """The finished streams that finished before ``finished_before``, oldest first."""
    found = [
        s.info
        for s in streams
        if s.info.finished_at is not None
        and s.info.status.finished
        and s.info.finished_at < finished_before
    ]
    return sorted(found, key=lambda info: info.finished_at or finished_before)


def stale(streams: Iterable[StoredStream], cutoff: datetime) -> list[StoredStream]:
    """The ``streaming`` streams whose last heartbeat is before ``cutoff``, oldest first."""
    found = [
        s for s in streams if s.info.status is StreamStatus.STREAMING and s.heartbeat_at < cutoff
    ]
    return sorted(found, key=lambda s: s.heartbeat_at)


def unclaimed(streams: Iterable[StoredStream], cutoff: datetime) -> list[StoredStream]:
    """The pts streams (no path) left ``pending`` since before ``cutoff``, oldest first."""
    waiting = [
        s
        for s in streams
        if s.info.status is StreamStatus.PENDING
        and s.info.path is None
        and s.info.updated_at < cutoff
    ]
    return sorted(waiting, key=lambda s: s.info.updated_at)

"""The memory store's rows, clock and small rules (as the SQL stores apply them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pts.models import StreamInfo, StreamStatus

__all__ = [
    "Clock",
    "StoreClock",
    "StoredStream",
    "reason_fields",
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

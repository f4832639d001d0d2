"""The memory store's rows, clock and small rules (as the SQL stores apply them)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pts.errors import InvalidInput, StreamNotFound
from pts.models import StreamInfo, StreamStatus
from pts.store import validate as v

__all__ = [
    "Clock",
    "StoreClock",
    "StoredStream",
    "check_sweep_args",
    "parse_status",
    "parse_uuid",
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


def check_sweep_args(seconds: float, limit: int) -> None:
    """The sweeps' arguments, checked as the SQL stores check them."""
    v.seconds("stale_after", seconds)
    v.integer("limit", limit, minimum=1, maximum=v.INT4_MAX)


def parse_status(value: str) -> StreamStatus:
    """A stream status; anything else is an InvalidInput."""
    try:
        return StreamStatus(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a stream status") from None


def parse_uuid(value: uuid.UUID | str) -> uuid.UUID:
    """A UUID or its string form; anything else is a StreamNotFound, as in the SQL stores."""
    if isinstance(value, uuid.UUID):
        return value
    with contextlib.suppress(ValueError):
        return uuid.UUID(str(value))
    raise StreamNotFound(str(value))

"""``Notification``: one change of a stream, as Postgres (or a MemoryStore) announces it.

Kept apart from the :class:`~pts.live.listener.Listener` (which needs asyncpg)
so that everything that only handles notifications (the hub, the writers, the
in-memory store) does not depend on how they arrive.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Notification", "NotificationHandler", "ReconnectHandler"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One change of a stream, as announced by Postgres on the ``pts_v1`` channel."""

    stream_id: uuid.UUID
    size: int
    """The stream's size after the change: the offset of the next append."""
    status: str
    """A :class:`~pts.models.StreamStatus` value, or ``"deleted"``."""
    closed: bool

    @classmethod
    def from_payload(cls, payload: str) -> Notification:
        """Parse the JSON payload ``{"id", "size", "status", "closed"}``.

        Raises ValueError when the payload is not such an object: anyone may
        NOTIFY on the channel, so its contents are checked, not trusted.
        """
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        stream_id, size, status, closed = (
            data.get("id"),
            data.get("size"),
            data.get("status"),
            data.get("closed"),
        )
        if not isinstance(stream_id, str):
            raise ValueError("'id' is not a string")
        # bool is a subclass of int; a size of `true` is malformed, not 1.
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("'size' is not a non-negative integer")
        if not isinstance(status, str):
            raise ValueError("'status' is not a string")
        if not isinstance(closed, bool):
            raise ValueError("'closed' is not a boolean")
        return cls(stream_id=uuid.UUID(stream_id), size=size, status=status, closed=closed)


NotificationHandler = Callable[[Notification], None]
"""Called on the event loop for every notification; must not block."""
ReconnectHandler = Callable[[], None]
"""Called on the event loop after a reconnect, once LISTEN is in effect again."""

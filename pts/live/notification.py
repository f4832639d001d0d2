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

__all__ = ["Notification", "NotificationHandler", "ReconnectHandler", "parse_batch"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One change of a stream, as announced by Postgres: alone on the ``pts_v1``
    channel, or as an entry of a batch on ``pts_v2`` (:func:`parse_batch`)."""

    stream_id: uuid.UUID
    size: int
    """The stream's size after the change: the offset of the next append."""
    status: str
    """A :class:`~pts.models.StreamStatus` value, or ``"deleted"``."""
    closed: bool
    stop: bool = False
    """Not a change but a request (``"stop": true``, :meth:`Store.request_stop`): the
    process driving the stream is asked to end it ``aborted`` with ``reason``, after
    storing what it buffered. Processes from before it ignore the key."""
    reason: str | None = None

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
        return cls.from_object(data)

    @classmethod
    def from_object(cls, data: object) -> Notification:
        """The notification a parsed JSON object ``{"id", "size", "status", "closed"}``
        stands for; ValueError when it is not such an object."""
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
        stop, reason = data.get("stop", False), data.get("reason")
        if not isinstance(stop, bool):
            raise ValueError("'stop' is not a boolean")
        if reason is not None and not isinstance(reason, str):
            raise ValueError("'reason' is not a string")
        return cls(uuid.UUID(stream_id), size, status, closed, stop, reason if stop else None)


def parse_batch(payload: str) -> tuple[list[Notification], list[str]]:
    """The notifications of a ``pts_v2`` payload, and what was wrong with it.

    The payload is a JSON array of the ``pts_v1`` objects, one per stream a
    committed batch changed. Checked, not trusted (anyone may NOTIFY): a
    malformed entry is reported in the second list and skipped, the others are
    still returned; a stream named twice is returned once, with its last entry.
    A payload that is not a JSON array yields no notification and one problem.
    """
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        return [], [f"not JSON: {exc}"]
    if not isinstance(data, list):
        return [], ["not a JSON array"]
    found: dict[uuid.UUID, Notification] = {}
    problems: list[str] = []
    for index, entry in enumerate(data):
        try:
            note = Notification.from_object(entry)
        except ValueError as exc:
            problems.append(f"entry {index}: {exc}")
            continue
        found.pop(note.stream_id, None)  # the last entry wins, in its place
        found[note.stream_id] = note
    return list(found.values()), problems


NotificationHandler = Callable[[Notification], None]
"""Called on the event loop for every notification; must not block."""
ReconnectHandler = Callable[[], None]
"""Called on the event loop after a reconnect, once LISTEN is in effect again."""

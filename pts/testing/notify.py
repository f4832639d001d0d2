"""In-process notifications: what the database's NOTIFY trigger and the listener do, in one."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

from pts.live.notification import Notification, NotificationHandler
from pts.models import StreamInfo

__all__ = ["Notifier"]

logger = logging.getLogger("pts.testing")


class Notifier:
    """Handlers called for every change of a stream, soon after it, on the event loop."""

    def __init__(self) -> None:
        self._handlers: dict[int, NotificationHandler] = {}
        self._serial = itertools.count()

    def listen(self, handler: NotificationHandler) -> Callable[[], None]:
        """Add ``handler``; returns a function that removes it."""
        key = next(self._serial)
        self._handlers[key] = handler

        def remove() -> None:
            self._handlers.pop(key, None)

        return remove

    def announce(self, info: StreamInfo, *, deleted: bool = False) -> None:
        """Send ``{id, size, status, closed}`` (status ``"deleted"`` for a deletion).

        Delivered on the next loop turn, as Postgres delivers after the commit:
        never inside the store call that made the change.
        """
        note = Notification(
            stream_id=info.id,
            size=info.size,
            status="deleted" if deleted else str(info.status),
            closed=True if deleted else info.closed,
        )
        asyncio.get_running_loop().call_soon(self._deliver, note)

    def _deliver(self, note: Notification) -> None:
        # A snapshot: a handler may add or remove handlers while we iterate.
        for handler in tuple(self._handlers.values()):
            try:
                handler(note)
            except Exception:
                logger.exception("pts memory store handler %r failed on %s", handler, note)

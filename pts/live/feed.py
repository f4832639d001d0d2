"""``ChangeFeed``: how this process hears that a stream changed.

On a database, the one LISTEN connection (:class:`~pts.live.listener.Listener`);
on a :class:`~pts.testing.MemoryStore`, the store's own in-process
announcements. Either way the same handlers see the same
:class:`~pts.live.notification.Notification` values, and the feed counts them
(for :meth:`PersistentTextStreaming.stats <pts.PersistentTextStreaming.stats>`).
"""

from __future__ import annotations

from collections.abc import Callable

from pts.live.listener import Listener
from pts.live.notification import Notification, NotificationHandler, ReconnectHandler
from pts.store.base import Store
from pts.testing import MemoryStore

__all__ = ["ChangeFeed"]


class ChangeFeed:
    """The change notifications of one component, from Postgres or from a MemoryStore.

    Add the handlers first (:meth:`on_change`, :meth:`on_reconnect`), then
    :meth:`start`; each handler is registered on its own, so one that raises
    does not keep the others from their notification.
    """

    def __init__(self) -> None:
        self.notifications = 0
        """Change notifications received since :meth:`start`."""
        self._handlers: list[NotificationHandler] = [self._count]
        self._reconnect_handlers: list[ReconnectHandler] = []
        self._listener: Listener | None = None
        self._unlisten: list[Callable[[], None]] = []
        self._started = False

    def on_change(self, handler: NotificationHandler) -> None:
        """Call ``handler`` for every notification (add before :meth:`start`)."""
        self._handlers.append(handler)

    def on_reconnect(self, handler: ReconnectHandler) -> None:
        """Call ``handler`` after the LISTEN connection came back (notifications were lost)."""
        self._reconnect_handlers.append(handler)

    async def start(self, store: Store, dsn: str | None) -> None:
        """Begin hearing changes: from ``store`` itself if it is a MemoryStore, else on ``dsn``."""
        self._started = True
        if isinstance(store, MemoryStore):
            # No database: the store itself announces changes, in process.
            self._unlisten = [store.listen(handler) for handler in self._handlers]
            return
        if dsn is None:
            raise RuntimeError("a database store needs its URL for the LISTEN connection")
        self._listener = Listener(dsn)
        for handler in self._handlers:
            self._listener.add_handler(handler)
        for on_reconnect in self._reconnect_handlers:
            self._listener.add_reconnect_handler(on_reconnect)
        await self._listener.start()

    async def stop(self) -> None:
        """Stop hearing changes (close the LISTEN connection). Idempotent."""
        self._started = False
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stop()
        for remove in self._unlisten:
            remove()
        self._unlisten = []

    @property
    def connected(self) -> bool:
        """Changes are heard now: the LISTEN connection is up (always, on a MemoryStore)."""
        return self._started and (self._listener is None or self._listener.connected)

    @property
    def reconnects(self) -> int:
        """LISTEN connections re-established after the first one."""
        return 0 if self._listener is None else self._listener.reconnects

    def _count(self, _note: Notification) -> None:
        self.notifications += 1

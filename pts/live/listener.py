"""The one LISTEN connection per process: Postgres notifications in, handler calls out.

Every committed change of a stream's size, status or closed flag makes Postgres
send a small JSON notification (see ``sql/schema.sql``): on the channel
``pts_v1``, one per change, from the row trigger (plain SQL writers, processes
from before migration 0004); on ``pts_v2``, a JSON array naming every stream a
group-committed batch of appends changed (several when it would pass 8000
bytes). A :class:`Listener` keeps one dedicated connection listening on both
and calls its handlers once per stream named, so a process needs one
connection for all its subscribers rather than one per subscriber.

Notifications are fire-and-forget: those sent while the connection is down are
lost. The listener therefore reconnects on its own and then calls its reconnect
handlers, whose job is to catch up from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from types import TracebackType
from typing import Any

import asyncpg

from pts.live.notification import (
    Notification,
    NotificationHandler,
    ReconnectHandler,
    parse_batch,
)
from pts.store.queries import queries
from pts.tasks import raise_if_cancelling, stop_tasks

__all__ = ["Listener", "Notification", "NotificationHandler", "ReconnectHandler"]

logger = logging.getLogger("pts.listener")


class Listener:
    """One dedicated autocommit asyncpg connection (NOT from a pool) that LISTENs on
    ``channel`` (one change per notification) and ``batch_channel`` (batches).

    A pooled connection would be handed to other code between uses and lose its
    LISTEN; hence a connection of its own, kept for the life of the listener::

        listener = Listener(dsn)
        remove = listener.add_handler(lambda n: wake_subscribers(n.stream_id, n.size))
        listener.add_reconnect_handler(catch_up_from_the_table)
        await listener.start()
        ...
        await listener.stop()

    A dropped connection is noticed in two ways: asyncpg reports a closed socket
    at once, and when nothing arrived for ``probe_interval`` seconds a probe
    query must answer within ``probe_timeout`` (a half-open TCP connection, e.g.
    behind a NAT that forgot it, never reports anything). The listener then
    reconnects with exponential backoff and jitter, from ``backoff_initial`` up
    to ``backoff_max`` seconds between attempts, until :meth:`stop`.
    """

    CHANNEL = "pts_v1"
    BATCH_CHANNEL = "pts_v2"

    reconnects: int
    """Connections established after :meth:`start` returned (each one called the
    reconnect handlers); for tests and metrics."""

    def __init__(
        self,
        dsn: str,
        *,
        channel: str = CHANNEL,
        batch_channel: str | None = BATCH_CHANNEL,
        probe_interval: float = 5.0,
        probe_timeout: float = 2.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if probe_interval <= 0 or probe_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("probe_interval, probe_timeout and connect_timeout must be positive")
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self.dsn = dsn
        self.channel = channel
        self.batch_channel = batch_channel
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.reconnects = 0
        self._probe_sql = queries()["listener_probe"]
        # Keyed by a serial number, so the same callable may be added twice and
        # each removal function removes exactly the registration it came from.
        self._handlers: dict[int, NotificationHandler] = {}
        self._reconnect_handlers: dict[int, ReconnectHandler] = {}
        self._serial = 0
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection[Any] | None = None
        self._connected = asyncio.Event()
        self._first_attempt: asyncio.Future[None] | None = None
        self._last_activity = 0.0

    # -- public API ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect, LISTEN, and start the task that keeps the connection alive.

        Returns once the first connection attempt has finished, whether it
        succeeded or not (at most ``connect_timeout`` seconds): with the
        database down it does not raise, ``connected`` is False and the task
        keeps retrying in the background. Calling it while started does nothing.
        """
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        # Fresh primitives per start, so a listener may be stopped and started
        # again, even on another event loop.
        self._connected = asyncio.Event()
        first_attempt: asyncio.Future[None] = loop.create_future()
        self._first_attempt = first_attempt
        self._task = asyncio.create_task(self._supervise(), name=f"pts-listener:{self.channel}")
        # Shielded: a caller that gives up waiting must not cancel the future the
        # task will still try to resolve.
        await asyncio.shield(first_attempt)

    async def stop(self) -> None:
        """Stop the task and close the connection. Idempotent; safe before start()."""
        task = self._task
        if task is None:
            return
        # A cancellation of stop() itself still propagates.
        await stop_tasks([task], "the listener")
        if self._task is task:
            self._task = None

    async def __aenter__(self) -> Listener:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def add_handler(self, handler: NotificationHandler) -> Callable[[], None]:
        """Call ``handler`` for every notification; returns a function that removes it.

        Handlers run on the event loop, in the order they were added. An
        exception in one is logged and does not affect the others.
        """
        key = self._next_serial()
        self._handlers[key] = handler

        def remove() -> None:
            self._handlers.pop(key, None)

        return remove

    def add_reconnect_handler(self, handler: ReconnectHandler) -> Callable[[], None]:
        """Call ``handler`` after every reconnect; returns a function that removes it.

        Notifications sent while the connection was down are lost, so a handler
        should catch up from the table. It runs once LISTEN is in effect again,
        so nothing committed after its read can be missed. It is not called for
        the connection made within :meth:`start`, but it is for a first
        connection made later because the database was down at start.
        """
        key = self._next_serial()
        self._reconnect_handlers[key] = handler

        def remove() -> None:
            self._reconnect_handlers.pop(key, None)

        return remove

    @property
    def connected(self) -> bool:
        """True while the connection is up and LISTENing."""
        conn = self._conn
        return conn is not None and self._connected.is_set() and not conn.is_closed()

    @property
    def backend_pid(self) -> int | None:
        """The Postgres backend process id of the LISTEN connection, None when down."""
        conn = self._conn
        return conn.get_server_pid() if conn is not None and self.connected else None

    # A timeout parameter rather than asyncio.timeout() at the call site: the
    # answer on timeout is False, not an exception.
    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until connected (at most ``timeout`` seconds); True if connected."""
        if self.connected:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    # -- the supervising task ------------------------------------------------------

    async def _supervise(self) -> None:
        """Connect, watch, reconnect, forever (until cancelled by stop())."""
        loop = asyncio.get_running_loop()
        delay = self.backoff_initial
        in_outage = False  # a WARNING was logged and no recovery since
        try:
            while True:
                try:
                    conn, lost = await self._connect()
                except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
                    raise_if_cancelling()  # stop() came while connecting: see pts.tasks
                    self._first_attempt_done()
                    if not in_outage:
                        in_outage = True
                        logger.warning(
                            "pts listener cannot connect to the database (%s); retrying",
                            _describe(exc),
                        )
                    else:
                        logger.debug("pts listener connect attempt failed: %s", _describe(exc))
                    await asyncio.sleep(self._jittered(delay))
                    delay = min(delay * 2, self.backoff_max)
                    continue

                # Decided before resolving the first attempt: a connection made
                # after start() returned may have missed notifications.
                is_reconnect = self._first_attempt is not None and self._first_attempt.done()
                self._conn = conn
                self._connected.set()
                self._first_attempt_done()
                up_since = self._last_activity = loop.time()
                if in_outage:
                    in_outage = False
                    logger.info("pts listener connected to the database again")
                if is_reconnect:
                    self.reconnects += 1
                    self._call_reconnect_handlers()

                reason = await self._watch(conn, lost)

                self._drop(conn)
                in_outage = True
                logger.warning("pts listener lost its connection (%s); reconnecting", reason)
                # Reset the backoff only after a connection that held for a while:
                # one that drops right after connecting must not make us hammer
                # the server with a reconnect every backoff_initial seconds.
                if loop.time() - up_since >= self.backoff_max:
                    delay = self.backoff_initial
                await asyncio.sleep(self._jittered(delay))
                delay = min(delay * 2, self.backoff_max)
        finally:
            self._first_attempt_done()
            last, self._conn = self._conn, None
            self._connected.clear()
            if last is not None:
                await self._close(last)

    async def _connect(self) -> tuple[asyncpg.Connection[Any], asyncio.Event]:
        """A new connection with LISTEN in effect, and the event set when it closes."""
        # asyncpg connections are autocommit unless a transaction is started,
        # which this one never does: LISTEN takes effect at once.
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            self.dsn, timeout=self.connect_timeout
        )
        lost = asyncio.Event()

        def on_termination(_conn: object) -> None:
            lost.set()
            if self._conn is conn:
                self._connected.clear()

        try:
            conn.add_termination_listener(on_termination)
            async with asyncio.timeout(self.connect_timeout):
                # add_listener issues LISTEN itself (with the channel quoted).
                await conn.add_listener(self.channel, self._on_notify)
                if self.batch_channel is not None:
                    await conn.add_listener(self.batch_channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        return conn, lost

    async def _watch(self, conn: asyncpg.Connection[Any], lost: asyncio.Event) -> str:
        """Return (with the reason) once the connection is closed or stops answering."""
        loop = asyncio.get_running_loop()
        while True:
            if lost.is_set() or conn.is_closed():
                return "connection closed"
            idle = loop.time() - self._last_activity
            if idle < self.probe_interval:
                # A notification resets the idle clock, so a busy channel needs
                # no probes at all.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.probe_interval - idle):
                        await lost.wait()
                continue
            try:
                async with asyncio.timeout(self.probe_timeout):
                    await conn.fetchval(self._probe_sql)
            except TimeoutError:
                return f"no answer to the probe within {self.probe_timeout:g} s"
            except Exception as exc:  # noqa: BLE001 - any probe failure means the connection is unusable
                return f"probe failed: {_describe(exc)}"
            self._last_activity = loop.time()

    def _drop(self, conn: asyncpg.Connection[Any]) -> None:
        """Forget a broken connection without waiting on the network."""
        if self._conn is conn:
            self._conn = None
        self._connected.clear()
        # terminate(), not close(): a graceful close would wait for an answer a
        # dead peer never sends.
        conn.terminate()

    async def _close(self, conn: asyncpg.Connection[Any]) -> None:
        """Close gracefully when the server answers in time, else abort."""
        try:
            await conn.close(timeout=self.probe_timeout)
        except Exception:  # noqa: BLE001 - the connection is going away either way
            conn.terminate()

    # -- callbacks -----------------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        """asyncpg's callback (scheduled on the loop): parse, then call every handler
        (once per stream a batch names)."""
        # Any notification proves the connection alive: postpone the probe.
        self._last_activity = asyncio.get_running_loop().time()
        if not isinstance(payload, str):
            logger.warning("pts listener ignored a notification whose payload is not str")
            return
        if channel == self.batch_channel:
            notifications, problems = parse_batch(payload)
            for problem in problems:
                logger.warning("pts listener skipped a malformed batch entry (%s)", problem)
            for notification in notifications:
                self._deliver(notification)
            return
        try:
            notification = Notification.from_payload(payload)
        except ValueError as exc:
            logger.warning("pts listener ignored a malformed notification %r: %s", payload, exc)
            return
        self._deliver(notification)

    def _deliver(self, notification: Notification) -> None:
        # A snapshot: a handler may add or remove handlers while we iterate.
        for handler in tuple(self._handlers.values()):
            try:
                handler(notification)
            except Exception:
                logger.exception("pts listener handler %r failed on %s", handler, notification)

    def _call_reconnect_handlers(self) -> None:
        for handler in tuple(self._reconnect_handlers.values()):
            try:
                handler()
            except Exception:
                logger.exception("pts listener reconnect handler %r failed", handler)

    # -- helpers -------------------------------------------------------------------

    def _first_attempt_done(self) -> None:
        if self._first_attempt is not None and not self._first_attempt.done():
            self._first_attempt.set_result(None)

    def _jittered(self, delay: float) -> float:
        # Between half and all of the delay: many processes that lost the same
        # server do not come back in lockstep, and no wait is ever near zero.
        return delay / 2 + random.uniform(0, delay / 2)

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial


def _describe(exc: BaseException) -> str:
    """``Type: message`` (TimeoutError and friends often have an empty message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

"""``PersistentTextStreaming``: the component apps use.

One instance per process. It owns the store (the connection pool), the
process's LISTEN connection, the heartbeat of the streams this process drives
and the sweeper that times out streams whose driver died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TypeVar

from litestar.response import Stream

from pts.body import PagedBody, read_body
from pts.driver import (
    SHUTDOWN_MESSAGE,
    AnyRequest,
    Drive,
    Generate,
    driving_response,
    keep_body,
)
from pts.errors import (
    AlreadyDriven,
    ConfigurationError,
    InvalidInput,
    InvalidOffset,
    InvalidTransition,
    PTSError,
)
from pts.flush import FlushPolicy
from pts.hub import READ_PAGE_BYTES, SUBSCRIBER_BUFFER_BYTES, Chunk, Hub, Update, subscribe_text
from pts.listener import Listener, Notification
from pts.logsafe import safe, warn_throttled
from pts.models import Metadata, StreamBody, StreamInfo, StreamStatus
from pts.opening import open_store
from pts.settings import Driver, Settings
from pts.stats import Stats
from pts.store import SQLStore, Store, validate
from pts.store.base import DEFAULT_CONTENT_TYPE, DEFAULT_MAX_STREAM_SIZE
from pts.testing import MemoryStore
from pts.writing import StreamWriter, WriterRegistry

T = TypeVar("T")

logger = logging.getLogger("pts")


class PersistentTextStreaming:
    """Persistent text streaming on Postgres.

    ``dsn=None`` reads ``PTS_DATABASE_URL`` / ``DATABASE_URL`` and falls back to
    the embedded Postgres (data in ``PTS_DATA_DIR``, default ``.pts`` in the
    working directory), as the CLI does. Call :meth:`open` (the Litestar
    plugin does it in the app's lifespan) before use and :meth:`close` after,
    or use ``async with PersistentTextStreaming() as pts:``.

    :param stale_after: seconds without a heartbeat after which a streaming
        stream is judged dead and marked ``timeout`` (its driver process died).
    :param heartbeat_interval: how often this process heartbeats the streams it
        drives (default: a third of ``stale_after``).
    :param sweep_interval: how often this process looks for stale streams.
    :param outage_limit: how long unpersisted text is kept and retried while the
        database is unreachable before the stream ends with ``error``.
    :param subscriber_buffer: updates buffered per subscriber; a subscriber
        that falls further behind re-reads from its offset instead.
    :param subscriber_buffer_bytes: bytes buffered per subscriber (default
        :data:`~pts.hub.SUBSCRIBER_BUFFER_BYTES`, 1 MiB); past it, likewise.
    :param read_page_bytes: the most bytes one read of a subscription or of a
        stream's body asks the database for (default
        :data:`~pts.hub.READ_PAGE_BYTES`, 1 MiB): longer texts are read in pages.
    :param poll_interval: a stream's tail that heard nothing for this long
        re-reads the table (NOTIFY is a hint, the table is the truth).
    :param max_stream_size: the most bytes a stream may hold (default 1 GiB;
        ``None``: no cap), for pts streams and Durable Streams protocol streams
        alike. The append that would pass it raises StreamTooLarge (413
        ``stream_too_large``) and stores nothing; a driven stream then ends
        ``error`` and its driving response is cut off.
    :param shutdown_grace: seconds the answers still running at shutdown get to
        finish (default ``PTS_SHUTDOWN_GRACE``, else 5); then they end ``error``.
        ``pts serve`` and ``pts demo`` apply it from the first Ctrl+C (see
        :mod:`pts.shutdown`); a second Ctrl+C ends them at once.
    :param pending_timeout: seconds a ``pending`` stream may wait for a driver
        (no change since it was created) before the sweeper ends it ``timeout``
        (default 600; ``None``: never). Subscribers see the ``timeout`` and end.
        Durable Streams protocol streams are ``pending`` while open and are
        never timed out this way: they have their own TTL.
    :param store: a ready store to run on instead of one on ``dsn`` (default
        ``None``). A :class:`pts.testing.MemoryStore` needs no database at all:
        its changes reach subscribers in process, and nothing is migrated,
        resolved or started. A SQL store needs ``dsn`` too, for the listener.
        Either way the component opens and closes it.
    """

    def __init__(
        self,
        dsn: str | None = None,
        driver: Driver = "asyncpg",
        flush: FlushPolicy | None = None,
        *,
        stale_after: float = 30.0,
        heartbeat_interval: float | None = None,
        sweep_interval: float = 5.0,
        outage_limit: float = 30.0,
        pool_min_size: int | None = None,
        pool_max_size: int | None = None,
        sweeper: bool = True,
        shutdown_grace: float | None = None,
        subscriber_buffer: int = 256,
        poll_interval: float = 3.0,
        subscriber_buffer_bytes: int = SUBSCRIBER_BUFFER_BYTES,
        read_page_bytes: int = READ_PAGE_BYTES,
        max_stream_size: int | None = DEFAULT_MAX_STREAM_SIZE,
        pending_timeout: float | None = 600.0,
        store: Store | None = None,
    ) -> None:
        if isinstance(store, SQLStore) and dsn is None:
            raise ConfigurationError(
                "store= on a database needs dsn= too (the listener connects to it); "
                "or pass a pts.testing.MemoryStore"
            )
        if store is not None and not isinstance(store, SQLStore | MemoryStore):
            raise ConfigurationError("store= takes a pts.testing.MemoryStore or a SQL store")
        self._dsn = dsn
        self.driver: Driver = driver
        self.flush = flush or FlushPolicy()
        if stale_after <= 0 or sweep_interval <= 0 or outage_limit < 0:
            raise ValueError("stale_after and sweep_interval must be positive, outage_limit >= 0")
        self.stale_after = stale_after
        self.heartbeat_interval = heartbeat_interval or stale_after / 3
        if not 0 < self.heartbeat_interval < stale_after:
            raise ValueError("heartbeat_interval must be positive and below stale_after")
        self.sweep_interval = sweep_interval
        self.outage_limit = outage_limit
        self.sweeper_enabled = sweeper
        self._pool_min_size = pool_min_size
        self._pool_max_size = pool_max_size
        if shutdown_grace is None:
            shutdown_grace = Settings.from_env().shutdown_grace
        if not 0 <= shutdown_grace < math.inf:
            raise ValueError("shutdown_grace must be a finite number of seconds, at least 0")
        self.shutdown_grace: float = shutdown_grace
        if subscriber_buffer < 1 or subscriber_buffer_bytes < 1 or read_page_bytes < 1:
            raise ValueError(
                "subscriber_buffer, subscriber_buffer_bytes and read_page_bytes must be at least 1"
            )
        self.subscriber_buffer = subscriber_buffer
        self.subscriber_buffer_bytes = subscriber_buffer_bytes
        self.read_page_bytes = read_page_bytes
        self.poll_interval = poll_interval
        try:
            self.max_stream_size = validate.max_stream_size(max_stream_size)
            if (
                pending_timeout is not None
                and validate.seconds("pending_timeout", pending_timeout) <= 0
            ):
                raise InvalidInput("pending_timeout must be positive")
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        self.pending_timeout = pending_timeout
        # A ready store (store=): opened and closed with the component, never migrated.
        self._given_store = store
        if store is not None:
            self.max_stream_size = store.max_stream_size
        self._hub: Hub | None = None
        self._store: Store | None = None
        self._listener: Listener | None = None
        self._unlisten: list[Callable[[], None]] = []  # a MemoryStore's in-process handlers
        self._tasks: list[asyncio.Task[None]] = []
        self._writers = WriterRegistry(self._spawn)
        self._drives: dict[uuid.UUID, Drive] = {}
        self._stopping = False  # set by pts.shutdown when the server begins to stop
        self._notifications = 0  # change notifications received (for stats())

    # -- lifecycle ---------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The database URL in use (known once :meth:`open` ran)."""
        if self._dsn is None:
            raise RuntimeError("PersistentTextStreaming is not open yet")
        return self._dsn

    @property
    def stopping(self) -> bool:
        """True once the server running this process began to stop (a first Ctrl+C).

        Work that would start a new answer (a background scan, say) should not
        start one now: it would only be cut short.
        """
        return self._stopping

    @property
    def writers(self) -> WriterRegistry:
        """The streams this process writes: heartbeated, stopped when finished elsewhere."""
        return self._writers

    @property
    def store(self) -> Store:
        """The underlying store, for operations the component does not wrap."""
        if self._store is None:
            raise RuntimeError("PersistentTextStreaming is not open: call `await pts.open()`")
        return self._store

    async def open(self, *, migrate: bool | None = None) -> None:
        """Connect: open the pool and start the background tasks. Idempotent.

        ``migrate``: ``True`` applies what the database lacks of the pts schema
        first (``pts migrate``; under an advisory lock, so concurrent starts are
        safe); ``False`` only checks it; ``None`` (the default) migrates the
        embedded Postgres (no URL configured) and checks any other database.
        Unless migrated, a database without the schema, or older than this
        code, raises SchemaNotMigrated, whose one line says what to run.
        """
        if self._store is not None:
            return
        settings = Settings.from_env()
        store, self._dsn = await open_store(
            self._given_store,
            self._dsn,
            self.driver,
            min_size=self._pool_min_size or settings.pool_min_size,
            max_size=self._pool_max_size or settings.pool_max_size,
            max_stream_size=self.max_stream_size,
            migrate=migrate,
        )
        self._store = store
        self._hub = Hub(
            store,
            buffer_size=self.subscriber_buffer,
            buffer_bytes=self.subscriber_buffer_bytes,
            page_bytes=self.read_page_bytes,
            poll_interval=self.poll_interval,
        )
        if isinstance(store, MemoryStore):
            # No database: the store itself announces changes, in process.
            self._unlisten = [
                store.listen(self._hub.on_notification),
                store.listen(self._on_notification),
            ]
        else:
            self._listener = Listener(self.dsn)
            self._listener.add_handler(self._hub.on_notification)
            self._listener.add_handler(self._on_notification)
            self._listener.add_reconnect_handler(self._on_reconnect)
            await self._listener.start()
        self._tasks = [asyncio.create_task(self._heartbeat_loop(), name="pts-heartbeat")]
        if self.sweeper_enabled:
            self._tasks.append(asyncio.create_task(self._sweep_loop(), name="pts-sweeper"))
        _OPEN.add(self)

    async def close(self) -> None:
        """Stop the background tasks and close the pool. Idempotent.

        Generations still running get ``shutdown_grace`` seconds to finish;
        the rest end with status ``error``.
        """
        if self._store is None:
            return
        _OPEN.discard(self)
        drives = [d.task for d in self._drives.values()]
        if drives:
            _done, pending = await asyncio.wait(drives, timeout=self.shutdown_grace)
            for drive in list(self._drives.values()):
                if drive.task in pending:
                    drive.cancel(StreamStatus.ERROR, SHUTDOWN_MESSAGE)
            if pending:
                await asyncio.wait(pending, timeout=self.shutdown_grace)
        self._writers.abandon_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        for remove in self._unlisten:
            remove()
        self._unlisten = []
        if self._hub is not None:
            self._hub.close()
            self._hub = None
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()

    def stats(self) -> Stats:
        """A snapshot of what this process's component holds and has done (see Stats)."""
        hub, listener = self._hub, self._listener
        return Stats(
            open=self._store is not None,
            stopping=self._stopping,
            writers=len(self._writers),
            drives=len(self._drives),
            attached_drives=sum(1 for drive in self._drives.values() if not drive.detached),
            tails=0 if hub is None else len(hub.tails),
            subscribers=0 if hub is None else hub.subscriptions,
            tail_reads=0 if hub is None else hub.reads,
            notifications=self._notifications,
            listener_connected=self._store is not None and (listener is None or listener.connected),
            listener_reconnects=0 if listener is None else listener.reconnects,
        )

    # -- stopping a server (pts.shutdown drives these) ---------------------

    def begin_stopping(self) -> None:
        """The server running this process begins to stop: see :attr:`stopping`."""
        self._stopping = True

    async def stop_answers(self, reason: str, within: float) -> None:
        """End every stream this process writes now: status ``error`` with ``reason``.

        A driven answer's generation is cancelled (its buffered text is
        persisted with the final status); an open writer is ended and its
        owner told (its next write raises StreamClosed). Waits up to
        ``within`` seconds for the final writes; one the database does not
        take by then is left to the sweeper (``timeout``).
        """
        drives = list(self._drives.values())
        driven = {drive.stream_id for drive in drives}
        work: list[asyncio.Future[None]] = []
        for drive in drives:
            drive.cancel(StreamStatus.ERROR, reason)
            work.append(drive.task)
        work.extend(self._writers.interrupt(reason, sparing=driven))
        if work:
            await asyncio.wait(work, timeout=within)

    def end_subscriptions(self) -> None:
        """End every live read (after a last look at the table): see Hub.end_subscriptions."""
        if self._hub is not None:
            self._hub.end_subscriptions()

    async def __aenter__(self) -> PersistentTextStreaming:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- streams -----------------------------------------------------------

    async def create_stream(
        self,
        client_id: str | None = None,
        metadata: Metadata | None = None,
        *,
        owner: str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> uuid.UUID:
        """Create a ``pending`` stream; returns its id. Raises ClientIdTaken."""
        info = await self.store.create_stream(
            client_id=client_id, metadata=metadata, owner=owner, content_type=content_type
        )
        return info.id

    async def get_stream(self, stream_id: uuid.UUID) -> StreamInfo:
        """A stream's metadata. Raises StreamNotFound."""
        return await self.store.get_stream(stream_id)

    async def get_stream_body(self, stream_id: uuid.UUID) -> StreamBody:
        """The whole text persisted so far, with the stream's state. Raises StreamNotFound.

        It is all loaded into memory: for a long stream, prefer :meth:`subscribe`
        or :meth:`read_stream` (read in pages). The plugin's ``GET`` route
        streams the same document in pages.
        """
        return await self._body_of(await self.store.get_stream(stream_id))

    async def _body_of(self, info: StreamInfo) -> StreamBody:
        """The body of a stream whose metadata the caller already has, all in memory."""
        body = await self._body_pages(info)
        text = body.whole
        if text is None:
            text = "".join([piece async for piece in body.texts()])
        return StreamBody(stream=body.stream, text=text)

    async def _body_pages(self, info: StreamInfo) -> PagedBody:
        """The body of a stream, to be read in pages of ``read_page_bytes`` (see PagedBody)."""
        return await read_body(self.store, info, self.read_page_bytes)

    async def cancel(self, stream_id: uuid.UUID, reason: str | None = None) -> StreamInfo:
        """Abort the stream for every viewer, from any process.

        The driver's generation is cancelled (within a second, wherever it
        runs); the text persisted so far stays. Cancelling a finished stream
        changes nothing and returns its state. Raises InvalidInput for a
        ``reason`` Postgres cannot store (a NUL, a lone surrogate), before
        anything changes.
        """
        validate.optional_text("reason", reason)
        drive = self._drives.get(stream_id)
        if drive is not None:
            # Driven here: stop the generation ourselves, so the text it had
            # buffered is persisted with the final status.
            drive.cancel(StreamStatus.ABORTED, reason)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(drive.task), timeout=5.0)
            return await self.store.get_stream(stream_id)
        writer = self._writers.get(stream_id)
        if writer is not None:
            with contextlib.suppress(PTSError):
                await writer.abort(reason)
            return await self.store.get_stream(stream_id)
        try:
            # The NOTIFY of this change reaches the driving process, which stops.
            return await self.store.set_status(stream_id, StreamStatus.ABORTED, reason=reason)
        except InvalidTransition:
            return await self.store.get_stream(stream_id)

    async def delete_stream(self, stream_id: uuid.UUID) -> None:
        """Delete the stream and its text. Raises StreamNotFound."""
        await self.store.delete_stream(stream_id)

    # -- driving -------------------------------------------------------------

    async def stream(self, request: AnyRequest, stream_id: uuid.UUID, generate: Generate) -> Stream:
        """The HTTP action: run ``generate`` and stream its text to this client.

        Claims the stream (``pending -> streaming``) so only one driver runs:
        a second call raises AlreadyDriven, which the plugin answers with 409
        ``{"error": "already_driven", "status", "size"}`` (subscribe instead).
        The generation runs in its own task and outlives this request; tokens go
        to the client at once and to Postgres on sentence boundaries. The stream
        ends ``done``, ``error`` (the generator raised), ``aborted`` (cancel) or
        ``timeout`` (this process died). Raises StreamNotFound.
        """
        await keep_body(request)
        try:
            info = await self.store.claim(stream_id)
        except InvalidTransition as exc:
            # The plugin maps it to 409 {"error": "already_driven", "status", "size"}.
            raise AlreadyDriven(exc.stream_id, exc.current, exc.size) from None
        drive = Drive(self, request, info, generate)
        self._drives[info.id] = drive
        drive.task.add_done_callback(lambda _t: self._drives.pop(info.id, None))
        return driving_response(drive)

    async def create_write_stream(
        self,
        client_id: str | None = None,
        metadata: Metadata | None = None,
        *,
        owner: str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> StreamWriter:
        """Create a stream and return its writer (``await writer.write(text)``, ``close()``).

        The stream starts ``streaming``. Raises ClientIdTaken if ``client_id`` is in use.
        """
        info = await self.store.create_stream(
            client_id=client_id,
            metadata=metadata,
            owner=owner,
            content_type=content_type,
            status=StreamStatus.STREAMING,
        )
        return StreamWriter(self, info)

    # -- reading -------------------------------------------------------------

    async def subscribe(
        self, stream_id: uuid.UUID, offset: int = 0
    ) -> AsyncGenerator[Update, None]:
        """Watch a stream live: its text from byte ``offset`` on, then every change.

        Yields :class:`~pts.hub.Update` (offset, end, text, status, finished):
        first what the table holds from ``offset`` (a long backlog as several
        updates, one per page of ``read_page_bytes``), then each flush as it
        commits, and status changes. Only the last update has ``finished``
        (earlier pages of a finished stream already carry its final status).
        Ends after the stream finishes (``done``, ``error``, ``timeout``,
        ``aborted``). To resume, subscribe again from the
        last update's ``end``: nothing is lost or repeated. Raises
        StreamNotFound (also if the stream is deleted meanwhile), or
        InvalidOffset for an offset past the end or inside a character.
        """
        async for update in self._updates(stream_id, offset, idle=None):
            if update is not None:
                yield update

    def _updates(
        self, stream_id: uuid.UUID, offset: int, *, idle: float | None
    ) -> AsyncGenerator[Update | None, None]:
        """:meth:`subscribe`, plus ``None`` after each ``idle`` seconds of silence (for SSE)."""
        hub = self._live(stream_id, offset)
        return subscribe_text(hub, self.store, stream_id, offset, idle=idle)

    def _live(self, stream_id: uuid.UUID, offset: int) -> Hub:
        """The hub, for a live read from ``offset`` (which must not be negative)."""
        if self._hub is None:
            raise RuntimeError("PersistentTextStreaming is not open: call `await pts.open()`")
        if offset < 0:
            raise InvalidOffset(stream_id, offset, 0)
        return self._hub

    def subscribe_bytes(
        self, stream_id: uuid.UUID, offset: int = 0, *, idle: float | None = None
    ) -> AsyncGenerator[Chunk | None, None]:
        """Raw chunks of a stream from byte ``offset`` on, live (see :meth:`Hub.subscribe_bytes`).

        For protocols that carry bytes, not text (Durable Streams): no decoding,
        offsets are bytes. With ``idle``, ``None`` comes after each ``idle``
        seconds of silence. Ends after the stream is closed.
        """
        return self._live(stream_id, offset).subscribe_bytes(stream_id, offset, idle=idle)

    async def read_stream(
        self,
        stream_id: uuid.UUID | None = None,
        *,
        client_id: str | None = None,
        byte_offset: int = 0,
    ) -> AsyncIterator[str]:
        """The stream's text from ``byte_offset`` on, live, ending when the stream finishes.

        Name the stream by ``stream_id`` or ``client_id``. Raises StreamNotFound,
        or InvalidOffset for an offset past the end or inside a character.
        """
        if (stream_id is None) == (client_id is None):
            raise InvalidInput("read_stream takes exactly one of stream_id and client_id")
        if stream_id is None:
            assert client_id is not None
            stream_id = (await self.store.get_stream_by_client_id(client_id)).id
        async for update in self.subscribe(stream_id, byte_offset):
            if update.text:
                yield update.text

    # -- background ------------------------------------------------------------

    def _on_notification(self, note: Notification) -> None:
        self._notifications += 1
        if note.closed or note.status == "deleted":
            deleted = note.status == "deleted"
            status = StreamStatus.ABORTED if deleted else StreamStatus(note.status)
            self._writers.closed_elsewhere(note.stream_id, status)

    def _on_reconnect(self) -> None:
        # Notifications sent while the listener was away are lost: every tail
        # re-reads from its offset, and our writers are re-checked.
        if self._hub is not None:
            self._hub.on_reconnect()
        if self._writers:
            self._spawn(self._check_writers())

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        """Run background work; keep a reference (forgetting finished tasks)."""
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(work))

    async def _check_writers(self) -> None:
        await self._writers.check(self.store)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            ids = self._writers.ids()
            if not ids:
                continue
            alive = await _quietly(self.store.heartbeat(ids), "heartbeat")
            if alive is None:
                continue
            # A writer whose stream is no longer streaming was finished
            # elsewhere and we missed the notification.
            for stream_id in ids:
                writer = self._writers.get(stream_id)
                if stream_id not in alive and writer is not None and not writer.finished:
                    self._spawn(self._check_writers())
                    break

    async def _sweep_loop(self) -> None:
        while True:
            # Jitter keeps the sweepers of many processes from running in step.
            await asyncio.sleep(self.sweep_interval * random.uniform(0.8, 1.2))
            swept = await _quietly(self.store.timeout_stale(self.stale_after), "sweep")
            for info in swept or ():
                logger.warning("stream %s timed out: its driver stopped heartbeating", info.id)
            if self.pending_timeout is not None:
                # Pending pts streams nobody drove: end them, so their readers end too.
                unclaimed = await _quietly(
                    self.store.timeout_pending(self.pending_timeout), "pending timeout"
                )
                for info in unclaimed or ():
                    logger.info("stream %s timed out: nobody drove it", info.id)
            # Expired and deleted streams no live fork needs (Durable Streams TTLs).
            await _quietly(self.store.collect_garbage(), "garbage collection")


_OPEN: set[PersistentTextStreaming] = set()
"""The instances open in this process: what a stopping server waits for (pts.shutdown)."""


def open_instances() -> list[PersistentTextStreaming]:
    """Every :class:`PersistentTextStreaming` open in this process."""
    return list(_OPEN)


async def _quietly(work: Awaitable[T], what: str) -> T | None:
    """Run background ``work``; log a failure instead of killing the loop."""
    try:
        return await work
    except Exception as exc:  # noqa: BLE001 - a background loop must survive anything
        warn_throttled(logger, what, "%s failed: %s", what, safe(exc))
        return None

"""``PersistentTextStreaming``: the component apps use; its composition root and lifecycle.

One instance per process. It builds and owns the parts: the store (the
connection pool), the change feed (the process's LISTEN connection,
:mod:`pts.live.feed`), the hub of live reads (:mod:`pts.live.hub`), the
registries of this process's writers (:mod:`pts.writing`) and drives
(:mod:`pts.driving`), and the background work (:mod:`pts.upkeep`: heartbeat,
sweeper). It opens and closes them in order, and reports on them
(:meth:`~PersistentTextStreaming.stats`). What an app does with streams is
in its base class, :class:`pts.operations.StreamOperations`.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from types import TracebackType

from pts.driving import Drives
from pts.errors import (
    ConfigurationError,
    InvalidInput,
)
from pts.flush import FlushPolicy
from pts.live.feed import ChangeFeed
from pts.live.hub import READ_PAGE_BYTES, SUBSCRIBER_BUFFER_BYTES, Hub
from pts.models import StreamStatus
from pts.opening import open_store
from pts.operations import StreamOperations
from pts.settings import Driver, PoolMode, Settings
from pts.stats import Counters, LiveStream, Stats
from pts.store import SQLStore, Store, validate
from pts.store.base import DEFAULT_MAX_STREAM_SIZE
from pts.testing import MemoryStore
from pts.upkeep import Upkeep
from pts.writing import WriterRegistry


class PersistentTextStreaming(StreamOperations):
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
        :data:`~pts.live.hub.SUBSCRIBER_BUFFER_BYTES`, 1 MiB); past it, likewise.
    :param read_page_bytes: the most bytes one read of a subscription or of a
        stream's body asks the database for (default
        :data:`~pts.live.hub.READ_PAGE_BYTES`, 1 MiB): longer texts are read in pages.
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
        :mod:`pts.http.shutdown`); a second Ctrl+C ends them at once.
    :param drain_timeout: seconds the answers still running get to finish when
        the server is sent SIGTERM, a rolling deploy's drain (default
        ``PTS_DRAIN_TIMEOUT``, else 120): meanwhile new drives get 503
        ``draining`` with ``Retry-After`` and subscribers are ended at once (they
        reconnect to another node); then they end ``error``.
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
    :param listen_dsn: where the one LISTEN connection goes (default
        ``PTS_LISTEN_DATABASE_URL``, else ``dsn``): a direct URL when ``dsn``
        goes through a transaction pooler, which cannot keep a LISTEN.
    :param pool_mode: ``"transaction"`` when ``dsn`` is a pooler in transaction
        pooling mode (PgBouncer): no prepared statement then outlives its
        transaction, and ``listen_dsn`` is required (default ``PTS_POOL_MODE``,
        else ``"session"``).
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
        drain_timeout: float | None = None,
        subscriber_buffer: int = 256,
        poll_interval: float = 3.0,
        subscriber_buffer_bytes: int = SUBSCRIBER_BUFFER_BYTES,
        read_page_bytes: int = READ_PAGE_BYTES,
        max_stream_size: int | None = DEFAULT_MAX_STREAM_SIZE,
        pending_timeout: float | None = 600.0,
        store: Store | None = None,
        listen_dsn: str | None = None,
        pool_mode: PoolMode | None = None,
    ) -> None:
        if isinstance(store, SQLStore) and dsn is None:
            raise ConfigurationError(
                "store= on a database needs dsn= too (the listener connects to it); "
                "or pass a pts.testing.MemoryStore"
            )
        if store is not None and not isinstance(store, SQLStore | MemoryStore):
            raise ConfigurationError("store= takes a pts.testing.MemoryStore or a SQL store")
        self._dsn = dsn
        self._listen_dsn = listen_dsn
        self._pool_mode = pool_mode
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
        if drain_timeout is None:
            drain_timeout = Settings.from_env().drain_timeout
        if not 0 <= drain_timeout < math.inf:
            raise ValueError("drain_timeout must be a finite number of seconds, at least 0")
        self.drain_timeout: float = drain_timeout
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
        self.counters = Counters()
        """The totals the parts keep as they work (appends, flushes, deliveries, errors):
        read them in :meth:`stats`."""
        self._hub: Hub | None = None
        self._store: Store | None = None
        self._feed = ChangeFeed()  # a fresh one per open(); kept after close() for stats()
        self._upkeep = Upkeep(self)
        self._writers = WriterRegistry(self._upkeep.spawn)
        self._drives = Drives()
        self._stopping = False  # set by pts.http.shutdown when the server begins to stop
        self._draining = False  # ... on SIGTERM: a rolling deploy's drain

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
        pool_mode = self._pool_mode or settings.pool_mode
        listen_dsn = self._listen_dsn or settings.listen_database_url
        on_database = not isinstance(self._given_store, MemoryStore)
        if listen_dsn is None and pool_mode == "transaction" and on_database:
            raise ConfigurationError(
                "PTS_POOL_MODE=transaction: the pool's URL goes through a transaction pooler, "
                "where LISTEN does not work; set PTS_LISTEN_DATABASE_URL (or listen_dsn=) "
                "to a direct connection"
            )
        store, self._dsn = await open_store(
            self._given_store,
            self._dsn,
            self.driver,
            min_size=self._pool_min_size or settings.pool_min_size,
            max_size=self._pool_max_size or settings.pool_max_size,
            max_stream_size=self.max_stream_size,
            migrate=migrate,
            pool_mode=pool_mode,
        )
        self._store = store
        self._hub = Hub(
            store,
            buffer_size=self.subscriber_buffer,
            buffer_bytes=self.subscriber_buffer_bytes,
            page_bytes=self.read_page_bytes,
            poll_interval=self.poll_interval,
            counters=self.counters,
        )
        # Notifications lost while the listener was away: every tail re-reads
        # from its offset, and our writers are re-checked.
        self._feed = feed = ChangeFeed()
        feed.on_change(self._hub.on_notification)
        feed.on_change(self._upkeep.on_notification)
        feed.on_change(self.on_stop_request)
        feed.on_reconnect(self._hub.on_reconnect)
        feed.on_reconnect(self._upkeep.on_reconnect)
        await feed.start(store, listen_dsn or self._dsn)
        self._upkeep.start(sweeper=self.sweeper_enabled)
        _OPEN.add(self)

    async def close(self) -> None:
        """Stop the background tasks and close the pool. Idempotent.

        Generations still running get ``shutdown_grace`` seconds to finish
        (``drain_timeout`` in a drain: :meth:`begin_stopping`); the rest end
        with status ``error``.
        """
        if self._store is None:
            return
        _OPEN.discard(self)
        await self._drives.wind_down(self.drain_timeout if self._draining else self.shutdown_grace)
        self._writers.abandon_all()
        await self._upkeep.stop()
        await self._feed.stop()
        if self._hub is not None:
            self._hub.close()
            self._hub = None
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()

    def stats(self) -> Stats:
        """A snapshot of what this process's component holds and has done (see Stats)."""
        hub, feed, counters, store = self._hub, self._feed, self.counters, self._store
        return Stats(
            open=self._store is not None,
            stopping=self._stopping,
            writers=len(self._writers),
            drives=len(self._drives),
            attached_drives=self._drives.attached,
            tails=0 if hub is None else len(hub.tails),
            subscribers=0 if hub is None else hub.subscriptions,
            tail_reads=0 if hub is None else hub.reads,
            notifications=feed.notifications,
            listener_connected=self._store is not None and feed.connected,
            listener_reconnects=feed.reconnects,
            appends=counters.appends,
            bytes_persisted=counters.bytes_persisted,
            database_errors=counters.database_errors,
            outage_retries=counters.outage_retries,
            flush_seconds=counters.flush_seconds.snapshot(),
            flush_bytes=counters.flush_bytes.snapshot(),
            delivery_seconds=counters.delivery_seconds.snapshot(),
            protocol_appends=counters.protocol_appends,
            protocol_bytes=counters.protocol_bytes,
            request_failures=dict(counters.request_failures),
            append_transactions=store.append_transactions if isinstance(store, SQLStore) else 0,
        )

    def live_stream(self, stream_id: uuid.UUID) -> LiveStream | None:
        """What this process holds for a live read of ``stream_id`` (see LiveStream).

        ``None`` when nothing here reads it live (no subscriber, or not open).
        A read-only snapshot, for monitoring and tests.
        """
        return None if self._hub is None else self._hub.live_stream(stream_id)

    def live_streams(self) -> list[LiveStream]:
        """:meth:`live_stream` of every stream this process reads live."""
        hub = self._hub
        views = [] if hub is None else [hub.live_stream(stream_id) for stream_id in list(hub.tails)]
        return [view for view in views if view is not None]

    # -- stopping a server (pts.http.shutdown drives these) ---------------------

    def begin_stopping(self, *, drain: bool = False) -> None:
        """The server running this process begins to stop: see :attr:`stopping`.

        New drives are refused from now on (Draining: 503 with Retry-After).
        ``drain`` (SIGTERM: a rolling deploy) also ends every subscription now,
        so its clients reconnect to another node, and :meth:`close` then gives
        the generations still running ``drain_timeout`` instead of
        ``shutdown_grace``.
        """
        self._stopping = True
        if drain:
            self._draining = True
            self.end_subscriptions()

    async def stop_answers(self, reason: str, within: float) -> None:
        """End every stream this process writes now: status ``error`` with ``reason``.

        A driven answer's generation is cancelled (its buffered text is
        persisted with the final status); an open writer is ended and its
        owner told (its next write raises StreamClosed). Waits up to
        ``within`` seconds for the final writes; one the database does not
        take by then is left to the sweeper (``timeout``).
        """
        drives = self._drives.all()
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


_OPEN: set[PersistentTextStreaming] = set()
"""The instances open in this process: what a stopping server waits for (pts.http.shutdown)."""


def open_instances() -> list[PersistentTextStreaming]:
    """Every :class:`PersistentTextStreaming` open in this process."""
    return list(_OPEN)

"""``PersistentTextStreaming``: the component apps use.

One instance per process. It owns the store (the connection pool), the
process's LISTEN connection, the heartbeat of the streams this process drives
and the sweeper that times out streams whose driver died.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from types import TracebackType

from pts.database import resolve_dsn
from pts.errors import InvalidTransition
from pts.flush import FlushPolicy
from pts.models import Metadata, StreamBody, StreamInfo, StreamStatus
from pts.settings import Driver, Settings
from pts.store import SQLStore, create_store
from pts.store.base import DEFAULT_CONTENT_TYPE

logger = logging.getLogger("pts")


class PersistentTextStreaming:
    """Persistent text streaming on Postgres.

    ``dsn=None`` reads ``PTS_DATABASE_URL`` / ``DATABASE_URL`` and falls back to
    the embedded Postgres, as the CLI does. Call :meth:`open` (the Litestar
    plugin does it in the app's lifespan) before use and :meth:`close` after.

    :param stale_after: seconds without a heartbeat after which a streaming
        stream is judged dead and marked ``timeout`` (its driver process died).
    :param heartbeat_interval: how often this process heartbeats the streams it
        drives (default: a third of ``stale_after``).
    :param sweep_interval: how often this process looks for stale streams.
    :param outage_limit: how long unpersisted text is kept and retried while the
        database is unreachable before the stream ends with ``error``.
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
    ) -> None:
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
        self._store: SQLStore | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The database URL in use (known once :meth:`open` ran)."""
        if self._dsn is None:
            raise RuntimeError("PersistentTextStreaming is not open yet")
        return self._dsn

    @property
    def store(self) -> SQLStore:
        """The underlying store, for operations the component does not wrap."""
        if self._store is None:
            raise RuntimeError("PersistentTextStreaming is not open: call `await pts.open()`")
        return self._store

    async def open(self) -> None:
        """Connect: open the pool and start the background tasks. Idempotent."""
        if self._store is not None:
            return
        settings = Settings.from_env()
        if self._dsn is None:
            # May start the embedded Postgres: blocking work, off the event loop.
            self._dsn = await asyncio.to_thread(resolve_dsn, settings)
        store = create_store(
            self._dsn,
            self.driver,
            min_size=self._pool_min_size or settings.pool_min_size,
            max_size=self._pool_max_size or settings.pool_max_size,
        )
        await store.open()
        self._store = store

    async def close(self) -> None:
        """Stop the background tasks and close the pool. Idempotent."""
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()

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
        """The whole text persisted so far, with the stream's state. Raises StreamNotFound."""
        info = await self.store.get_stream(stream_id)
        read = await self.store.read(stream_id)
        # Size and state come from the text's own snapshot (the stream may
        # have grown between the two reads).
        info = dataclasses.replace(
            info, size=read.next_offset, status=read.status, closed=read.closed
        )
        text = read.data.decode("utf-8", errors="replace")
        return StreamBody(stream=info, text=text)

    async def cancel(self, stream_id: uuid.UUID, reason: str | None = None) -> StreamInfo:
        """Abort the stream for every viewer, from any process.

        The driver's generation is cancelled (within a second, wherever it
        runs); the text persisted so far stays. Cancelling a finished stream
        changes nothing and returns its state.
        """
        try:
            return await self.store.set_status(stream_id, StreamStatus.ABORTED, reason=reason)
        except InvalidTransition:
            return await self.store.get_stream(stream_id)

    async def delete_stream(self, stream_id: uuid.UUID) -> None:
        """Delete the stream and its text. Raises StreamNotFound."""
        await self.store.delete_stream(stream_id)

"""A synchronous facade over the async store, for producers in sync code.

A Celery task, a Django view or a plain script can create a stream and append
to it without an event loop of its own::

    with SyncStore() as store:  # PTS_DATABASE_URL, DATABASE_URL, else the embedded Postgres
        info = store.create_stream(status=StreamStatus.STREAMING)
        size = store.append(info.id, "Hello. ".encode(), offset=0)
        store.append(info.id, b"", offset=size, finish=StreamStatus.DONE)

The store runs on a private event loop in a daemon thread; every call blocks
until its result is there and raises the same typed errors as the async store.
It is safe to share one SyncStore between threads.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Sequence
from datetime import datetime
from types import TracebackType
from typing import TypeVar

from pts.database import resolve_dsn
from pts.models import Metadata, ReadResult, StreamInfo, StreamStatus
from pts.settings import Driver, Settings
from pts.store import create_store
from pts.store.base import DEFAULT_CONTENT_TYPE, DEFAULT_MAX_STREAM_SIZE
from pts.store.migrations import check_schema, migrate

T = TypeVar("T")


class SyncStore:
    """Blocking versions of every :class:`~pts.store.base.Store` operation.

    ``dsn=None`` resolves the database as the rest of pts does:
    ``PTS_DATABASE_URL``, else ``DATABASE_URL``, else the embedded Postgres
    (started if needed, and migrated). ``driver`` defaults to psycopg, the
    usual choice in sync code bases; ``max_stream_size`` caps each stream's
    size as in :func:`~pts.store.create_store`. Raises SchemaNotMigrated if a
    configured database lacks the pts schema (run ``pts migrate``).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        driver: Driver = "psycopg",
        min_size: int = 1,
        max_size: int = 4,
        max_stream_size: int | None = DEFAULT_MAX_STREAM_SIZE,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pts-sync-store", daemon=True
        )
        self._thread.start()
        try:
            url = self._run(_resolve(dsn))
            self._store = create_store(
                url, driver, min_size=min_size, max_size=max_size, max_stream_size=max_stream_size
            )
            self._run(self._store.open())
            try:
                self._run(check_schema(self._store))
            except BaseException:
                self._run(self._store.close())
                raise
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[object, object, T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("SyncStore cannot be called from its own event loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        """Close the pool and stop the private event loop."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._store.close())
        finally:
            self._stop_loop()

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def create_stream(
        self,
        *,
        client_id: str | None = None,
        path: str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        status: StreamStatus = StreamStatus.PENDING,
        metadata: Metadata | None = None,
        owner: str | None = None,
        expires_at: datetime | None = None,
    ) -> StreamInfo:
        """See :meth:`pts.store.base.Store.create_stream`."""
        return self._run(
            self._store.create_stream(
                client_id=client_id,
                path=path,
                content_type=content_type,
                status=status,
                metadata=metadata,
                owner=owner,
                expires_at=expires_at,
            )
        )

    def get_stream(self, stream_id: uuid.UUID) -> StreamInfo:
        """See :meth:`pts.store.base.Store.get_stream`."""
        return self._run(self._store.get_stream(stream_id))

    def get_stream_by_client_id(self, client_id: str) -> StreamInfo:
        """See :meth:`pts.store.base.Store.get_stream_by_client_id`."""
        return self._run(self._store.get_stream_by_client_id(client_id))

    def get_stream_by_path(self, path: str) -> StreamInfo:
        """See :meth:`pts.store.base.Store.get_stream_by_path`."""
        return self._run(self._store.get_stream_by_path(path))

    def append(
        self,
        stream_id: uuid.UUID,
        data: bytes,
        *,
        offset: int,
        finish: StreamStatus | None = None,
        reason: str | None = None,
    ) -> int:
        """See :meth:`pts.store.base.Store.append`."""
        return self._run(
            self._store.append(stream_id, data, offset=offset, finish=finish, reason=reason)
        )

    def read(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadResult:
        """See :meth:`pts.store.base.Store.read`."""
        return self._run(self._store.read(stream_id, offset, max_bytes))

    def claim(self, stream_id: uuid.UUID) -> StreamInfo:
        """See :meth:`pts.store.base.Store.claim`."""
        return self._run(self._store.claim(stream_id))

    def set_status(
        self, stream_id: uuid.UUID, status: StreamStatus, *, reason: str | None = None
    ) -> StreamInfo:
        """See :meth:`pts.store.base.Store.set_status`."""
        return self._run(self._store.set_status(stream_id, status, reason=reason))

    def heartbeat(self, stream_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """See :meth:`pts.store.base.Store.heartbeat`."""
        return self._run(self._store.heartbeat(stream_ids))

    def delete_stream(self, stream_id: uuid.UUID) -> None:
        """See :meth:`pts.store.base.Store.delete_stream`."""
        self._run(self._store.delete_stream(stream_id))


async def _resolve(dsn: str | None) -> str:
    """``dsn``, or the configured URL, or the embedded Postgres's (migrated: it is ours)."""
    if dsn is not None:
        return dsn
    settings = Settings.from_env()
    url = await asyncio.to_thread(resolve_dsn, settings)
    if settings.database_url is None:
        await migrate(url)
    return url

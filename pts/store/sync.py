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
import functools
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

from pts.database import resolve_dsn
from pts.settings import Driver, PoolMode, Settings
from pts.store import create_store
from pts.store.base import DEFAULT_MAX_STREAM_SIZE, Store
from pts.store.migrations import check_schema, migrate

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    operation: Callable[Concatenate[Store, P], Coroutine[object, object, T]],
) -> Callable[Concatenate[SyncStore, P], T]:
    """A SyncStore method that runs ``operation`` on the facade's store and loop.

    It calls the store's own method of that name (``operation`` is the
    :class:`Store` declaration: its signature and docstring are the method's).
    """
    name = operation.__name__

    # updated=(): not the declaration's __dict__, whose __isabstractmethod__ is not ours.
    @functools.wraps(operation, updated=())
    def blocking(self: SyncStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        method: Callable[P, Coroutine[object, object, T]] = getattr(self._store, name)
        return self._run(method(*args, **kwargs))

    blocking.__qualname__ = f"SyncStore.{name}"
    blocking.__module__ = __name__
    return blocking


class SyncStore:
    """Blocking versions of every :class:`~pts.store.base.Store` operation.

    ``dsn=None`` resolves the database as the rest of pts does:
    ``PTS_DATABASE_URL``, else ``DATABASE_URL``, else the embedded Postgres
    (started if needed, and migrated). ``driver`` defaults to psycopg, the
    usual choice in sync code bases; ``max_stream_size`` caps each stream's
    size as in :func:`~pts.store.create_store`; ``pool_mode`` (default
    ``PTS_POOL_MODE``) as there too. Raises SchemaNotMigrated if a
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
        pool_mode: PoolMode | None = None,
    ) -> None:
        if pool_mode is None:
            pool_mode = Settings.from_env().pool_mode
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pts-sync-store", daemon=True
        )
        self._thread.start()
        try:
            url = self._run(_resolve(dsn))
            self._store = create_store(
                url,
                driver,
                min_size=min_size,
                max_size=max_size,
                max_stream_size=max_stream_size,
                pool_mode=pool_mode,
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

    # Every operation of Store but open and close (the facade's own lifecycle),
    # derived from its declaration: the same parameters, return type and docstring.
    create_stream = _blocking(Store.create_stream)
    get_stream = _blocking(Store.get_stream)
    get_stream_by_client_id = _blocking(Store.get_stream_by_client_id)
    get_stream_by_path = _blocking(Store.get_stream_by_path)
    append = _blocking(Store.append)
    read = _blocking(Store.read)
    read_parts = _blocking(Store.read_parts)
    claim = _blocking(Store.claim)
    set_status = _blocking(Store.set_status)
    request_stop = _blocking(Store.request_stop)
    heartbeat = _blocking(Store.heartbeat)
    find_stale = _blocking(Store.find_stale)
    timeout_stale = _blocking(Store.timeout_stale)
    timeout_pending = _blocking(Store.timeout_pending)
    delete_stream = _blocking(Store.delete_stream)
    ds_lookup = _blocking(Store.ds_lookup)
    ds_create = _blocking(Store.ds_create)
    ds_append = _blocking(Store.ds_append)
    ds_delete = _blocking(Store.ds_delete)
    collect_garbage = _blocking(Store.collect_garbage)
    prune = _blocking(Store.prune)
    count_prunable = _blocking(Store.count_prunable)
    compact = _blocking(Store.compact)
    compact_finished = _blocking(Store.compact_finished)


async def _resolve(dsn: str | None) -> str:
    """``dsn``, or the configured URL, or the embedded Postgres's (migrated: it is ours)."""
    if dsn is not None:
        return dsn
    settings = Settings.from_env()
    url = await asyncio.to_thread(resolve_dsn, settings)
    if settings.database_url is None:
        await migrate(url)
    return url

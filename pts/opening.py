"""Opening the component's store: the one it was given, or one on the configured database.

For a database, this is where the URL is resolved (the embedded Postgres is
started when none is configured), migrations run if asked, and the schema is
checked at startup rather than failing at the first request.
"""

from __future__ import annotations

import asyncio

from pts.database import resolve_dsn
from pts.settings import Driver, PoolMode, Settings
from pts.store import SQLStore, Store, create_store
from pts.store.migrations import check_schema
from pts.store.migrations import migrate as run_migrations
from pts.testing import MemoryStore

__all__ = ["open_store"]


async def open_store(
    given: Store | None,
    dsn: str | None,
    driver: Driver,
    *,
    min_size: int,
    max_size: int,
    max_stream_size: int | None,
    migrate: bool | None,
    pool_mode: PoolMode = "session",
) -> tuple[Store, str | None]:
    """The opened store and the database URL it uses (``None`` for a MemoryStore).

    ``migrate``: ``True`` migrates, ``False`` only checks, ``None`` migrates the
    embedded Postgres and checks any other database (SchemaNotMigrated if it
    lacks the schema or is older than this code).
    """
    if isinstance(given, MemoryStore):
        await given.open()
        return given, dsn
    settings = Settings.from_env()
    embedded = dsn is None and settings.database_url is None
    if dsn is None:
        # May start the embedded Postgres: blocking work, off the event loop.
        dsn = await asyncio.to_thread(resolve_dsn, settings)
    if migrate or (migrate is None and embedded):
        await run_migrations(dsn)
    store = (
        given
        if isinstance(given, SQLStore)
        else create_store(
            dsn,
            driver,
            min_size=min_size,
            max_size=max_size,
            max_stream_size=max_stream_size,
            pool_mode=pool_mode,
        )
    )
    if settings.notify_v1:
        store.notify_v1 = True  # PTS_NOTIFY_V1: a rolling upgrade from before 0004
    await store.open()
    try:
        # Here, not at the first request: a missing table would be a 500 there.
        await check_schema(store)
    except BaseException:
        await store.close()
        raise
    return store, dsn

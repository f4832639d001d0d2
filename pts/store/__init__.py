"""The storage layer: the only part of pts that speaks SQL."""

from __future__ import annotations

from pts.errors import ConfigurationError
from pts.settings import DRIVERS, POOL_MODES, Driver, PoolMode
from pts.store.base import DEFAULT_MAX_STREAM_SIZE, TRANSITIONS, Store
from pts.store.sql import SQLStore

__all__ = ["DEFAULT_MAX_STREAM_SIZE", "TRANSITIONS", "SQLStore", "Store", "create_store"]


def create_store(
    dsn: str,
    driver: Driver = "asyncpg",
    *,
    min_size: int = 1,
    max_size: int = 10,
    max_stream_size: int | None = DEFAULT_MAX_STREAM_SIZE,
    pool_mode: PoolMode = "session",
) -> SQLStore:
    """A store for ``dsn`` on the named driver; call ``await store.open()`` before use.

    ``max_stream_size`` caps every stream's size in bytes (default 1 GiB; None: no
    cap): the append that would pass it raises StreamTooLarge and stores nothing.
    ``pool_mode="transaction"``: ``dsn`` is a pooler in transaction pooling mode
    (PgBouncer), so no prepared statement may outlive its transaction.
    """
    if pool_mode not in POOL_MODES:
        raise ConfigurationError(
            f"unknown pool mode {pool_mode!r}: choose one of {', '.join(POOL_MODES)}"
        )
    if driver == "asyncpg":
        from pts.store.asyncpg_store import AsyncpgStore

        return AsyncpgStore(
            dsn,
            min_size=min_size,
            max_size=max_size,
            max_stream_size=max_stream_size,
            pool_mode=pool_mode,
        )
    if driver == "psycopg":
        from pts.store.psycopg_store import PsycopgStore

        return PsycopgStore(
            dsn,
            min_size=min_size,
            max_size=max_size,
            max_stream_size=max_stream_size,
            pool_mode=pool_mode,
        )
    raise ConfigurationError(f"unknown driver {driver!r}: choose one of {', '.join(DRIVERS)}")

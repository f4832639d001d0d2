"""The storage layer: the only part of pts that speaks SQL."""

from __future__ import annotations

from pts.errors import ConfigurationError
from pts.settings import DRIVERS, Driver
from pts.store.base import TRANSITIONS, SQLStore, Store

__all__ = ["TRANSITIONS", "SQLStore", "Store", "create_store"]


def create_store(
    dsn: str, driver: Driver = "asyncpg", *, min_size: int = 1, max_size: int = 10
) -> SQLStore:
    """A store for ``dsn`` on the named driver; call ``await store.open()`` before use."""
    if driver == "asyncpg":
        from pts.store.asyncpg_store import AsyncpgStore

        return AsyncpgStore(dsn, min_size=min_size, max_size=max_size)
    if driver == "psycopg":
        from pts.store.psycopg_store import PsycopgStore

        return PsycopgStore(dsn, min_size=min_size, max_size=max_size)
    raise ConfigurationError(f"unknown driver {driver!r}: choose one of {', '.join(DRIVERS)}")

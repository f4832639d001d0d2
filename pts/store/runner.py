"""What a database driver gives the SQL store: named queries run on its own pool.

Each driver (asyncpg, psycopg) implements ``QueryRunner._fetch`` over its
pool and its error types; everything above it (which query, what an empty
result means) is written once in :class:`~pts.store.sql.SQLStore`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import cast

from pts.store.base import DEFAULT_MAX_STREAM_SIZE
from pts.store.rows import Row


class UniqueViolation(Exception):
    """Raised by a driver's ``_fetch`` when a unique constraint rejects a row."""

    def __init__(self, constraint: str) -> None:
        self.constraint = constraint
        super().__init__(constraint)


class QueryRunner(ABC):
    """A connection pool that runs the named queries of ``sql/queries.sql``."""

    driver: str = ""
    max_stream_size: int | None = DEFAULT_MAX_STREAM_SIZE
    notify_v1: bool = False
    """Batches of appends notify on ``pts_v1``, one notification per stream, rather
    than on ``pts_v2`` (``PTS_NOTIFY_V1``: a rolling upgrade from before 0004)."""
    batches_in_flight: int = 2
    """How many group-commit batches of one kind (driven appends, protocol appends)
    may be in flight at once (:mod:`pts.store.group_commit`)."""

    @abstractmethod
    async def open(self) -> None:
        """Open the connection pool."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection pool."""

    @abstractmethod
    async def _fetch(self, query: str, *args: object) -> list[Row]:
        """Run the named query; return every row. Translates driver errors."""

    async def _fetchrow(self, query: str, *args: object) -> Row | None:
        rows = await self._fetch(query, *args)
        return rows[0] if rows else None

    async def migration_versions(self) -> set[int] | None:
        """The migration versions recorded in this database, or None if it has no
        ``pts.schema_migrations`` table (no pts schema). Two cheap queries on the pool."""
        state = await self._fetchrow("migrations_state")
        if state is None or not state["has_migrations_table"]:
            return None
        return {cast(int, row["version"]) for row in await self._fetch("applied_migrations")}

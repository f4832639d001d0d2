"""The asyncpg store: the default, used on the server's hot path."""

from __future__ import annotations

from typing import Any

import asyncpg

from pts.errors import StoreUnavailable
from pts.settings import PoolMode
from pts.store import validate
from pts.store.base import DEFAULT_MAX_STREAM_SIZE
from pts.store.queries import queries
from pts.store.rows import Row
from pts.store.runner import UniqueViolation
from pts.store.sql import SQLStore

# Errors that mean "the database is gone or the connection broke", as opposed
# to "the database rejected this statement".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
    # Seen when the server goes away mid-statement ("cannot switch to state ..."):
    # the statement's outcome is unknown, as with a dropped connection.
    asyncpg.InternalClientError,
)


async def _keep_session(_conn: asyncpg.Connection[Any]) -> None:
    """The pool's reset on release: nothing to undo.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`` after every query: one more round trip and one
    more transaction per query (a fifth of the server's CPU per append, by
    profile). pts leaves no session state on a pooled connection but the
    settings it makes when the connection opens (``session_setup``): no SET
    (the group commit's setting is transaction-local), no session advisory lock
    (migrations take a transaction lock), no LISTEN (the listener has its own
    connection), no cursor. asyncpg still rolls back a transaction left open.
    """


class AsyncpgStore(SQLStore):
    """A :class:`~pts.store.base.Store` on an asyncpg connection pool.

    With ``pool_mode="transaction"`` (``dsn`` is PgBouncer in transaction
    pooling mode) the statement cache is off: asyncpg's cached statements are
    named and live in one server session, which the pooler hands to other
    clients between transactions ("prepared statement does not exist").
    """

    driver = "asyncpg"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        max_stream_size: int | None = DEFAULT_MAX_STREAM_SIZE,
        pool_mode: PoolMode = "session",
    ) -> None:
        self.dsn = dsn
        self.pool_mode: PoolMode = pool_mode
        self.max_stream_size = validate.max_stream_size(max_stream_size)
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._sql = queries()

    async def open(self) -> None:
        if self._pool is not None:
            return
        # asyncpg's default cache (100 statements), unless behind a transaction pooler.
        cache_size = 0 if self.pool_mode == "transaction" else 100
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                statement_cache_size=cache_size,
                reset=_keep_session,
                init=None if self.pool_mode == "transaction" else self._setup_session,
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot connect to the database: {exc}") from exc

    async def _setup_session(self, conn: asyncpg.Connection[Any]) -> None:
        await conn.fetch(self._sql["session_setup"])

    async def close(self) -> None:
        if self._pool is not None:
            await self.drain_appends()
            pool, self._pool = self._pool, None
            await pool.close()

    async def _fetch(self, query: str, *args: object) -> list[Row]:
        if self._pool is None:
            raise RuntimeError("the store is not open: call `await store.open()` first")
        try:
            return list(await self._pool.fetch(self._sql[query], *args))
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(exc.constraint_name or "") from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {exc}") from exc

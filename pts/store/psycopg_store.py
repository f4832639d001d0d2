"""The psycopg 3 store (async), for apps already on psycopg; SyncStore wraps it for sync code."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pts.errors import StoreUnavailable
from pts.settings import PoolMode
from pts.store import validate
from pts.store.base import DEFAULT_MAX_STREAM_SIZE
from pts.store.queries import queries
from pts.store.rows import Row
from pts.store.runner import UniqueViolation
from pts.store.sql import SQLStore
from pts.tasks import raise_if_cancelling

_PLACEHOLDER = re.compile(r"\$(\d+)")


def to_psycopg(sql: str) -> str:
    """Rewrite ``$1`` placeholders as psycopg's ``%(p1)s`` (and escape literal ``%``)."""
    return _PLACEHOLDER.sub(r"%(p\1)s", sql.replace("%", "%%"))


class PsycopgStore(SQLStore):
    """A :class:`~pts.store.base.Store` on a psycopg 3 async connection pool.

    With ``pool_mode="transaction"`` (``dsn`` is PgBouncer in transaction
    pooling mode) psycopg prepares nothing on the server (``prepare_threshold``
    None): a prepared statement lives in one server session, which the pooler
    hands to other clients between transactions.
    """

    driver = "psycopg"

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
        self._pool: AsyncConnectionPool | None = None
        self._sql = {name: to_psycopg(sql) for name, sql in queries().items()}

    async def open(self) -> None:
        if self._pool is not None:
            return
        # psycopg prepares a query on the server from its 5th execution, unless told not to.
        prepare = {"prepare_threshold": None} if self.pool_mode == "transaction" else {}
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=max(self.min_size, 1),
            max_size=self.max_size,
            kwargs={"autocommit": True, **prepare},
            open=False,
            timeout=30.0,
            configure=None if self.pool_mode == "transaction" else self._setup_session,
        )
        try:
            await pool.open(wait=True, timeout=30.0)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot connect to the database: {exc}") from exc
        self._pool = pool

    async def _setup_session(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(self._sql["session_setup"])

    async def close(self) -> None:
        if self._pool is not None:
            await self.drain_appends()
            pool, self._pool = self._pool, None
            await pool.close()

    async def _fetch(self, query: str, *args: object) -> list[Row]:
        if self._pool is None:
            raise RuntimeError("the store is not open: call `await store.open()` first")
        params = {f"p{i}": arg for i, arg in enumerate(args, start=1)}
        try:
            # Dict rows: the store reads every row by column name.
            async with (
                self._pool.connection() as conn,
                conn.cursor(row_factory=dict_row) as cursor,
            ):
                # The pool's wait for a connection may have eaten a cancellation
                # (Python 3.11's wait_for: see pts.tasks): honour it before the query.
                raise_if_cancelling()
                await cursor.execute(self._sql[query], params)
                return list(await cursor.fetchall()) if cursor.description else []
        except psycopg.errors.UniqueViolation as exc:
            raise UniqueViolation(exc.diag.constraint_name or "") from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"database unavailable: {exc}") from exc

"""How Postgres plans pts's read: by the rows it returns, never by the tables' sizes.

Plans, not timings: a read of a fork's tail must use index lookups only (no
whole-table scan, however many streams and chunk rows the tables hold), and a
pooled connection must keep the one generic plan (Postgres would otherwise go
on replanning the read on every call once the tables grew after the
connection's first reads: a millisecond of planning per read at a million chunk
rows). Both drivers.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import asyncpg

from pts.settings import Driver, PoolMode
from pts.store import SQLStore, create_store
from pts.store.asyncpg_store import AsyncpgStore
from pts.store.psycopg_store import PsycopgStore
from pts.store.queries import queries
from pts.store.rows import Row

FILLER_STREAMS = 2_000
FILLER_ROWS = 20
"""Chunk rows per filler stream: 40,000 in all, with 2,000 streams beside ours."""


async def fill(conn: asyncpg.Connection) -> None:
    """Many other streams with their chunk rows, then fresh planner statistics."""
    await conn.execute(
        """
        WITH made AS (
            INSERT INTO pts.streams (path, content_type, size)
            SELECT 'filler-' || n, 'text/plain', $2::bigint * 10
              FROM generate_series(1, $1::int) n
            RETURNING id
        )
        INSERT INTO pts.chunks (stream_id, start_offset, data)
        SELECT made.id, (g - 1) * 10, '0123456789'::bytea
          FROM made, generate_series(1, $2::bigint) g
        """,
        FILLER_STREAMS,
        FILLER_ROWS,
    )
    await conn.execute("ANALYZE pts.streams; ANALYZE pts.chunks")


async def lineage(store: SQLStore) -> uuid.UUID:
    """A fork of a fork of a stream, each with bytes of its own; the last fork's id."""
    _, source = await store.ds_create(
        "/plans/root", content_type="text/plain", data=b"root bytes. " * 5
    )
    assert source is not None
    _, middle = await store.ds_create(
        "/plans/middle", content_type="text/plain", data=b"middle. ", source=source, fork_offset=24
    )
    assert middle is not None
    _, fork = await store.ds_create(
        "/plans/fork", content_type="text/plain", data=b"fork.", source=middle, fork_offset=32
    )
    assert fork is not None
    return fork


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(plan_nodes(child))
    return nodes


async def test_a_forks_tail_read_scans_no_whole_table(
    db_url: str, driver: Driver, conn: asyncpg.Connection
) -> None:
    store = create_store(db_url, driver)
    await store.open()
    try:
        fork = await lineage(store)
        whole = await store.read(fork, 0)
        assert whole.data == b"root bytes. root bytes. middle. fork."
    finally:
        await store.close()
    await fill(conn)
    # The plan a pooled connection runs: the generic one (see test below).
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE tail_read(uuid, bigint, bigint) AS {queries()['read']}")
    tail = len(whole.data) - 5
    explained = await conn.fetchval(
        f"EXPLAIN (FORMAT JSON) EXECUTE tail_read('{fork}', {tail}, NULL)"
    )
    nodes = plan_nodes(json.loads(explained)[0]["Plan"])
    scanned = [(n["Node Type"], n.get("Relation Name")) for n in nodes if "Relation Name" in n]
    assert {relation for _, relation in scanned} == {"streams", "chunks"}
    whole_table = [(kind, relation) for kind, relation in scanned if "Index" not in kind]
    assert whole_table == [], f"the read scans whole tables: {scanned}"


class Probing:
    """A store's own pooled session, looked into (what these tests are about)."""

    async def probe(self, sql: str) -> list[Row]:
        """``sql`` (no parameters, no ``%``) on one of the store's pooled connections."""
        self._sql["test_probe"] = sql  # type: ignore[attr-defined]
        rows: list[Row] = await self._fetch("test_probe")  # type: ignore[attr-defined]
        return rows


class ProbingAsyncpgStore(Probing, AsyncpgStore):
    pass


class ProbingPsycopgStore(Probing, PsycopgStore):
    pass


def probing_store(
    db_url: str, driver: Driver, pool_mode: PoolMode = "session"
) -> ProbingAsyncpgStore | ProbingPsycopgStore:
    """A store of one connection (one session to look into) on ``driver``."""
    kind = ProbingAsyncpgStore if driver == "asyncpg" else ProbingPsycopgStore
    return kind(db_url, min_size=1, max_size=1, pool_mode=pool_mode)


async def test_a_pooled_connection_keeps_the_generic_plan_as_the_tables_grow(
    db_url: str, driver: Driver, conn: asyncpg.Connection
) -> None:
    store = probing_store(db_url, driver)
    await store.open()
    try:
        fork = await lineage(store)
        for _ in range(8):  # past psycopg's prepare threshold (5)
            await store.read(fork, 0)
        await fill(conn)
        for _ in range(8):
            assert (await store.read(fork, 20)).data == b"es. middle. fork."
        [setting] = await store.probe("SELECT current_setting('plan_cache_mode') AS mode")
        assert setting["mode"] == "force_generic_plan"
        reads = await store.probe(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE position('RECURSIVE lineage' in statement) > 0",
        )
        assert reads, "the read is not a prepared statement on this connection"
        assert sum(cast(int, r["custom_plans"]) for r in reads) == 0
        assert sum(cast(int, r["generic_plans"]) for r in reads) >= 8
    finally:
        await store.close()


async def test_behind_a_transaction_pooler_the_session_is_left_alone(
    db_url: str, driver: Driver
) -> None:
    # No pooler here: what matters is that pts sets nothing on the session, which a
    # transaction pooler would hand to other clients.
    store = probing_store(db_url, driver, pool_mode="transaction")
    await store.open()
    try:
        [setting] = await store.probe("SELECT current_setting('plan_cache_mode') AS mode")
        assert setting["mode"] == "auto"
    finally:
        await store.close()

"""pts through PgBouncer in transaction pooling mode, on both drivers.

The store contract suite runs again here with every store on a pooled URL
(``pool_mode="transaction"``); a driven stream is watched by a subscriber with
the pool through PgBouncer and LISTEN on a direct connection; and ``pts serve``
runs on it. PgBouncer keeps fewer server connections than the clients' pools,
so transactions of one client land on different server sessions: a named
prepared statement or a LISTEN through the pooler would fail here.

``.ci/run`` installs Debian's pgbouncer; elsewhere, without it, these tests are
skipped, except under CI, where a missing pgbouncer fails them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from pts import PersistentTextStreaming, StreamStatus
from pts.errors import ConfigurationError
from pts.flush import FlushPolicy
from pts.settings import Driver
from pts.store import Store, create_store
from tests.integration.test_store_contract import *  # noqa: F403 - the contract, rerun here
from tests.support.pgbouncer import PgBouncer, pgbouncer, pgbouncer_binary
from tests.support.postgres import DatabaseFactory
from tests.support.servers import run_pts_serve
from tests.support.sse import collect
from tests.support.waiting import until_stats

pytestmark = pytest.mark.postgres_only("PgBouncer stands in front of Postgres")

if pgbouncer_binary() is None and not os.environ.get("CI"):
    pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)", allow_module_level=True)


@pytest.fixture(scope="module")
def bouncer(databases: DatabaseFactory) -> Iterator[PgBouncer]:
    with pgbouncer(databases.server_url) as running:
        yield running


@pytest.fixture
def pooled_url(bouncer: PgBouncer, db_url: str) -> str:
    """This test's database, through PgBouncer."""
    return bouncer.url_for(db_url)


@pytest.fixture
async def store(pooled_url: str, driver: Driver) -> AsyncIterator[Store]:
    """The contract suite's store, on the pooled URL (overrides tests/conftest.py)."""
    s = create_store(pooled_url, driver, min_size=1, max_size=5, pool_mode="transaction")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_the_pooled_url_really_changes_server_sessions(pooled_url: str) -> None:
    """What makes the suite above meaningful: one client's statements run on
    several server sessions, so session state does not carry over."""
    conn = await asyncpg.connect(pooled_url, statement_cache_size=0)
    others = [await asyncpg.connect(pooled_url, statement_cache_size=0) for _ in range(3)]
    try:
        pids = set()
        for _ in range(20):
            # The other clients take server connections in between.
            async with asyncio.TaskGroup() as group:
                for other in others:
                    group.create_task(other.execute("SELECT pg_sleep(0.001)"))
                pids.add(await conn.fetchval("SELECT pg_backend_pid()"))
        assert len(pids) > 1
    finally:
        for c in (conn, *others):
            await c.close()


async def test_named_prepared_statements_fail_through_it(pooled_url: str, driver: Driver) -> None:
    """The control: the default pool mode (prepared statements) does break here."""
    s = create_store(pooled_url, driver, min_size=2, max_size=5)
    await s.open()
    try:
        created = await asyncio.gather(
            *(s.create_stream() for _ in range(40)), return_exceptions=True
        )
        ids = [c.id for c in created if not isinstance(c, BaseException)]
        reads = await asyncio.gather(*(s.get_stream(i) for i in ids * 5), return_exceptions=True)
        failures = [r for r in [*created, *reads] if isinstance(r, BaseException)]
        assert failures, "prepared statements survived transaction pooling: the test proves nothing"
    finally:
        await s.close()


async def test_a_driven_stream_reaches_a_subscriber(
    pooled_url: str, db_url: str, driver: Driver
) -> None:
    text = "".join(f"Sentence {i} is written through the pooler. " for i in range(40))
    async with PersistentTextStreaming(
        dsn=pooled_url,
        listen_dsn=db_url,
        pool_mode="transaction",
        driver=driver,
        flush=FlushPolicy(max_delay=0.01),
        sweeper=False,
        pool_max_size=4,
    ) as pts:
        writer = await pts.create_write_stream()
        subscription = asyncio.create_task(_text_of(pts, writer.stream_id))
        await until_stats(pts, lambda s: s.subscribers == 1, "the subscriber is attached")
        for word in text.split(" ")[:-1]:
            await writer.write(word + " ")
        await writer.close()
        seen = await asyncio.wait_for(subscription, 30)
        stored = await pts.store.read(writer.stream_id)
    assert seen == stored.data.decode() == text
    assert stored.status is StreamStatus.DONE


async def _text_of(pts: PersistentTextStreaming, stream_id: uuid.UUID) -> str:
    return "".join([update.text async for update in pts.subscribe(stream_id)])


async def test_transaction_pooling_without_a_listen_url_is_refused(pooled_url: str) -> None:
    pts = PersistentTextStreaming(dsn=pooled_url, pool_mode="transaction", sweeper=False)
    with pytest.raises(ConfigurationError, match="PTS_LISTEN_DATABASE_URL"):
        await pts.open()
    assert pts.stats().open is False


@pytest.mark.parametrize("server_driver", ["asyncpg", "psycopg"])
async def test_pts_serve_through_it(pooled_url: str, db_url: str, server_driver: str) -> None:
    env = {
        "PTS_POOL_MODE": "transaction",
        "PTS_LISTEN_DATABASE_URL": db_url,
        "PTS_DRIVER": server_driver,
    }
    with run_pts_serve(pooled_url, "--no-auth", env=env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            url = "/v1/stream/pooled"
            plain = {"Content-Type": "text/plain"}
            created = await client.put(url, headers=plain)
            assert created.status_code == 201, created.text
            live = asyncio.create_task(
                collect(client, f"{url}?offset=-1&live=sse", content_type="text/event-stream")
            )
            for i in range(30):
                appended = await client.post(url, content=f"part {i}. ".encode(), headers=plain)
                assert appended.status_code in (200, 204), appended.text
            closed = await client.post(url, headers={"Stream-Closed": "true"})
            assert closed.status_code in (200, 204), closed.text
            events = await asyncio.wait_for(live, 30)
            body = await client.get(url, params={"offset": "-1"})
    expected = "".join(f"part {i}. " for i in range(30))
    assert body.text == expected
    assert "".join(e.data for e in events if e.event == "data") == expected

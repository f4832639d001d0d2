"""Group commit through the Durable Streams routes, over real sockets: concurrent POSTs
that share one batch each get their own status, and an acknowledged append survives
the server's SIGKILL right after its response."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from pts.core import PersistentTextStreaming
from pts.http.app import create_app
from pts.settings import Driver
from pts.store import SQLStore, create_store
from tests.support.servers import run_pts_serve, serve_app
from tests.support.waiting import until

TEXT = {"content-type": "text/plain"}


@pytest.fixture
async def served(db_url: str, driver: Driver) -> AsyncIterator[tuple[SQLStore, str]]:
    store = create_store(db_url, driver, min_size=1, max_size=5)
    app = create_app(
        PersistentTextStreaming(dsn=db_url, store=store), no_auth=True, cors_origins=()
    )
    async with serve_app(app) as url:
        yield store, url


async def test_concurrent_posts_in_one_batch_get_their_own_statuses(
    served: tuple[SQLStore, str], db_url: str
) -> None:
    store, url = served
    async with httpx.AsyncClient(base_url=url, timeout=15) as client:
        for name in ("blocker", "a", "b", "producer", "seq", "closed"):
            assert (await client.put(f"/v1/stream/{name}", headers=TEXT)).status_code == 201
        producer = {"producer-id": "w", "producer-epoch": "3", "producer-seq": "0"}
        assert (
            await client.post("/v1/stream/producer", content=b"p", headers=TEXT | producer)
        ).status_code == 200
        seq = TEXT | {"stream-seq": "0009"}
        assert (await client.post("/v1/stream/seq", content=b"s", headers=seq)).status_code == 204
        closing = {"stream-closed": "true"}
        assert (await client.post("/v1/stream/closed", headers=closing)).status_code == 204

        # Hold one append in flight (its row is locked), so that the next POSTs all
        # wait for it and then share one batch.
        queue = store.ds_append_queue
        queue.max_in_flight = 1
        admin: asyncpg.Connection[Any] = await asyncpg.connect(db_url)
        try:
            lock = admin.transaction()
            await lock.start()
            await admin.execute("SELECT 1 FROM pts.streams WHERE path = 'blocker' FOR UPDATE")
            held = asyncio.create_task(
                client.post("/v1/stream/blocker", content=b"first", headers=TEXT)
            )
            await until(lambda: queue.in_flight == 1, "the blocked append is in flight")
            stale = {"producer-id": "w", "producer-epoch": "2", "producer-seq": "1"}
            posts = [
                client.post("/v1/stream/a", content=b"to a", headers=TEXT),
                client.post("/v1/stream/producer", content=b"old", headers=TEXT | stale),
                client.post(
                    "/v1/stream/seq", content=b"back", headers=TEXT | {"stream-seq": "0001"}
                ),
                client.post("/v1/stream/closed", content=b"late", headers=TEXT),
                client.post("/v1/stream/b", content=b"to b", headers=TEXT),
                client.post("/v1/stream/missing", content=b"?", headers=TEXT),
                client.post(
                    "/v1/stream/producer",
                    content=b"next",
                    headers=TEXT | {"producer-id": "w", "producer-epoch": "3", "producer-seq": "1"},
                ),
            ]
            answers = [asyncio.create_task(p) for p in posts]
            await until(lambda: queue.pending == len(posts), "every POST waits for the batch")
            batches = queue.stats.batches
            await lock.rollback()
        finally:
            await admin.close()
        assert (await held).status_code == 204
        responses = await asyncio.gather(*answers)

        assert [r.status_code for r in responses] == [204, 403, 409, 409, 204, 404, 200]
        assert queue.stats.batches == batches + 1  # all seven in one statement
        assert responses[1].headers["producer-epoch"] == "3"
        assert responses[3].headers["stream-closed"] == "true"
        assert responses[6].headers["producer-seq"] == "1"
        for name, body in (("a", b"to a"), ("b", b"to b"), ("producer", b"pnext")):
            read = await client.get(f"/v1/stream/{name}", params={"offset": "-1"})
            assert read.content == body
        assert (await client.get("/v1/stream/seq", params={"offset": "-1"})).content == b"s"


async def test_an_acknowledged_append_survives_a_sigkill(db_url: str, driver: Driver) -> None:
    with run_pts_serve(db_url, "--no-auth", env={"PTS_DRIVER": driver}) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
            assert (await client.put("/v1/stream/kept", headers=TEXT)).status_code == 201
            bodies = [f"append {n};".encode() for n in range(20)]
            sent = [client.post("/v1/stream/kept", content=body, headers=TEXT) for body in bodies]
            responses = await asyncio.gather(*sent)
            # At once after the last response: no graceful shutdown, nothing flushed later.
            server.process.send_signal(signal.SIGKILL)
        assert all(r.status_code == 204 for r in responses)
        assert await server.exited() == -signal.SIGKILL
    store = create_store(db_url, driver)
    await store.open()
    try:
        lookup = await store.ds_lookup("kept")
        assert lookup is not None
        data = (await store.read(lookup.stream.id)).data
    finally:
        await store.close()
    # Every acknowledged append is there (concurrent POSTs: in some order, each whole).
    assert len(data) == sum(map(len, bodies))
    assert sorted(data.decode().split(";")[:-1]) == sorted(b.decode()[:-1] for b in bodies)

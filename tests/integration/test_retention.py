"""Retention through the component and the plugin: ``ttl`` / ``expires_at`` on a pts stream.

What expiry means for a pts stream: the sweeper's garbage collection deletes it
(and its text) at its first sweep after the expiry; a stream that is being
driven or written then stays until it finishes, and goes at the next sweep.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar

from pts import InvalidInput, PersistentTextStreaming, PTSPlugin, StreamNotFound, StreamStatus
from pts.flush import FlushPolicy
from pts.plugin import allow_everything
from tests.support.servers import serve_app
from tests.support.waiting import until


async def gone(pts: PersistentTextStreaming, stream_id: object) -> bool:
    try:
        await pts.get_stream(stream_id)  # type: ignore[arg-type]
    except StreamNotFound:
        return True
    return False


async def test_create_stream_takes_a_ttl_or_an_expiry(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url, sweeper=False) as pts:
        with_ttl = await pts.get_stream(await pts.create_stream(ttl=3600))
        assert with_ttl.expires_at is not None
        assert with_ttl.expires_at - with_ttl.created_at == timedelta(hours=1)
        at = datetime(2040, 5, 6, 7, 8, 9, tzinfo=UTC)
        assert (await pts.get_stream(await pts.create_stream(expires_at=at))).expires_at == at
        writer = await pts.create_write_stream(ttl=60)
        assert (await pts.get_stream(writer.stream_id)).expires_at is not None
        await writer.close()
        with pytest.raises(InvalidInput, match="not both"):
            await pts.create_stream(ttl=60, expires_at=at)
        with pytest.raises(InvalidInput, match="ttl"):
            await pts.create_write_stream(ttl=-5)


async def test_a_written_stream_that_expires_is_kept_until_it_finishes(db_url: str) -> None:
    flush = FlushPolicy(max_delay=0.01)
    async with PersistentTextStreaming(dsn=db_url, sweep_interval=0.05, flush=flush) as pts:
        writer = await pts.create_write_stream(ttl=0.001)
        canary = await pts.create_stream(ttl=0.001)  # expired too, and driven by nobody
        await writer.write("Une réponse ")
        # The canary's collection proves a sweep ran after both expired.
        await until(lambda: gone(pts, canary), "the sweeper collects the expired pending stream")
        await writer.write("qui continue")
        whole = "Une réponse qui continue".encode()
        await until(lambda: writer.size == len(whole), "the writer persists its text")
        body = await pts.get_stream_body(writer.stream_id)
        assert (body.status, body.text) == (StreamStatus.STREAMING, "Une réponse qui continue")
        await writer.close()
        assert (await pts.get_stream_body(writer.stream_id)).status is StreamStatus.DONE
        await until(lambda: gone(pts, writer.stream_id), "the finished stream is collected")


def app(pts: PersistentTextStreaming) -> Litestar:
    return Litestar(plugins=[PTSPlugin(pts, authorize=allow_everything)])


async def test_post_streams_takes_a_ttl(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False)
    async with serve_app(app(pts)) as url, httpx.AsyncClient(base_url=url) as client:
        created = await client.post("/streams", json={"client_id": "c", "ttl": 90.5})
        assert created.status_code == 201, created.text
        info = await pts.store.get_stream_by_client_id("c")
        assert info.expires_at is not None
        assert info.expires_at - info.created_at == timedelta(seconds=90.5)
        bad: list[Any] = [0, -1, "soon", True, 1e300, None]
        for ttl in bad[:-1]:
            refused = await client.post("/streams", json={"ttl": ttl})
            assert refused.status_code == 400, (ttl, refused.text)
            assert "ttl" in refused.text
        plain = await client.post("/streams", json={"ttl": None})
        assert plain.status_code == 201
        stream_id = plain.json()["id"]
        assert (await pts.get_stream(stream_id)).expires_at is None


async def test_an_expired_stream_being_watched_ends_its_subscriber(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url, sweep_interval=0.05) as pts:
        stream_id = await pts.create_stream(ttl=0.5)

        async def watch() -> list[str]:
            return [u.text async for u in pts.subscribe(stream_id)]

        watching = asyncio.create_task(watch())
        with pytest.raises(StreamNotFound):
            await asyncio.wait_for(watching, 20)

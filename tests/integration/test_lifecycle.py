"""The lifecycle under failure: a killed driver times out, a database restart loses nothing."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from pts import Append, PersistentTextStreaming, StreamStatus
from pts.flush import FlushPolicy
from pts.store.migrations import migrate
from tests.integration.test_driving import Harness, make_app
from tests.support.postgres import embedded_server, restart_embedded
from tests.support.servers import serve_app


async def _wait_status(pts: PersistentTextStreaming, stream_id: uuid.UUID) -> StreamStatus:
    while (info := await pts.get_stream(stream_id)).status is StreamStatus.STREAMING:
        await asyncio.sleep(0.05)
    return info.status


@pytest.mark.timeout(60)
async def test_killed_driver_times_out_and_keeps_its_text(db_url: str) -> None:
    stale_after = 1.0
    driver = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.driver_process",
        db_url,
        str(stale_after),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert driver.stdout is not None
        line = await asyncio.wait_for(driver.stdout.readline(), 30)
        stream_id = uuid.UUID(line.decode().strip())
        async with PersistentTextStreaming(
            dsn=db_url, stale_after=stale_after, sweep_interval=0.2
        ) as pts:
            # While the driver lives, its heartbeat keeps the stream alive well
            # past stale_after, however old the stream gets.
            await asyncio.sleep(stale_after * 2.5)
            assert (await pts.get_stream(stream_id)).status is StreamStatus.STREAMING
            driver.kill()
            await asyncio.wait_for(driver.wait(), 10)
            # stale_after plus a sweep interval, with a wide margin against a noisy machine.
            status = await asyncio.wait_for(_wait_status(pts, stream_id), 20)
            assert status is StreamStatus.TIMEOUT
            info = await pts.get_stream(stream_id)
            assert info.error is not None
            assert "heartbeat" in info.error
            # Everything written before the kill was persisted (the unfinished
            # sentence by max_delay), and it stays.
            body = await pts.get_stream_body(stream_id)
            assert body.text == "The first sentence is persisted. This one never ends"
    finally:
        if driver.returncode is None:
            driver.kill()
            await asyncio.wait_for(driver.wait(), 10)


@pytest.fixture
async def restartable() -> AsyncIterator[tuple[str, object]]:
    """A private Postgres this test may restart without disturbing the others."""
    with embedded_server() as (url, pgdata):
        await migrate(url)
        yield url, pgdata


@pytest.mark.timeout(120)
async def test_database_restart_mid_stream_loses_nothing(
    restartable: tuple[str, object],
) -> None:
    url, pgdata = restartable
    sentences = [f"Sentence {i} survives the restart. " for i in range(60)]
    started = asyncio.Event()

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        for i, sentence in enumerate(sentences):
            for word in sentence.split(" ")[:-1]:
                await append(word + " ")
            if i == 5:
                started.set()
            await asyncio.sleep(0.02)

    pts = PersistentTextStreaming(
        dsn=url, flush=FlushPolicy(max_delay=0.05), outage_limit=60, stale_after=120
    )
    ref: list[Harness] = []
    async with serve_app(make_app(pts, ref)) as base_url:
        harness = Harness(pts, base_url)
        harness.generate = generate
        ref.append(harness)
        try:
            stream_id = await harness.new_stream()
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

                async def drive() -> bytes:
                    async with client.stream("POST", harness.drive_url(stream_id)) as response:
                        return b"".join([c async for c in response.aiter_raw()])

                driving = asyncio.create_task(drive())
                await asyncio.wait_for(started.wait(), 30)
                # Every connection (pool and listener) is dropped mid-stream.
                await asyncio.to_thread(restart_embedded, pgdata)  # type: ignore[arg-type]
                delivered = await asyncio.wait_for(driving, 60)
            expected = "".join(sentences)
            # The driving client never noticed.
            assert delivered.decode() == expected
            status = await asyncio.wait_for(_wait_status(pts, stream_id), 60)
            assert status is StreamStatus.DONE
            body = await pts.get_stream_body(stream_id)
            assert body.text == expected
            assert body.size == len(expected.encode())
            # The outage shows in pts.stats() (and so in /metrics): failed appends,
            # retried; the persisted bytes counted once.
            stats = pts.stats()
            assert stats.outage_retries >= 1, stats
            assert stats.database_errors >= stats.outage_retries
            assert stats.bytes_persisted == body.size
            assert stats.flush_seconds.count == stats.appends
        finally:
            await harness.client.aclose()


@pytest.mark.timeout(60)
async def test_writer_left_open_at_shutdown_times_out_later(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url, stale_after=1.0, sweeper=False)
    await pts.open()
    writer = await pts.create_write_stream()
    await writer.write("Persisted before shutdown. ")
    while writer.size == 0:
        await asyncio.sleep(0.01)
    await writer.write("still buffered")
    await pts.close()  # the owner never closed the writer
    async with PersistentTextStreaming(dsn=db_url, stale_after=1.0, sweep_interval=0.2) as other:
        status = await asyncio.wait_for(_wait_status(other, writer.stream_id), 20)
        assert status is StreamStatus.TIMEOUT
        body = await other.get_stream_body(writer.stream_id)
        assert body.text.startswith("Persisted before shutdown. ")

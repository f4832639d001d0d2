"""``pts serve``'s ``/metrics`` in a real server process: on by default, off with
``--no-metrics``, and its figures move while a stream written elsewhere is watched."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pts import PersistentTextStreaming
from tests.support.metrics import Scraper
from tests.support.servers import run_pts_serve
from tests.support.sse import collect

TOKEN = "metrics-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def until_scraped(
    client: httpx.AsyncClient, name: str, value: float, guard: float = 20.0
) -> dict[str, float]:
    """Scrape until ``name`` reads ``value`` (a hang guard, not a speed check)."""
    async with asyncio.timeout(guard):
        while (figures := await Scraper(client).scrape()).get(name) != value:
            await asyncio.sleep(0.02)
    return figures


@pytest.mark.timeout(90)
async def test_pts_serve_serves_metrics_that_move(db_url: str) -> None:
    with run_pts_serve(db_url, env={"PTS_ADMIN_TOKEN": TOKEN}) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            PersistentTextStreaming(dsn=db_url, sweeper=False) as writer_side,
        ):
            first = await Scraper(client).scrape()
            assert first["pts_subscribers"] == 0
            assert first["pts_draining"] == 0
            assert first["pts_listener_connected"] == 1
            assert "process_resident_memory_bytes" in first

            # A stream written by another process, watched over SSE on the server.
            writer = await writer_side.create_write_stream()
            watcher = asyncio.create_task(
                collect(client, f"/streams/{writer.stream_id}/events", headers=AUTH)
            )
            watched = await until_scraped(client, "pts_subscribers", 1)
            assert watched["pts_tails"] == 1
            for i in range(3):
                await writer.write(f"Line {i} of a watched stream. ")
            await writer.close()
            events = await asyncio.wait_for(watcher, 20)
            text = "".join(e.data for e in events if e.event == "text")
            assert text == "".join(f"Line {i} of a watched stream. " for i in range(3))

            after = await until_scraped(client, "pts_subscribers", 0)
            assert after["pts_notifications_received_total"] > first.get(
                "pts_notifications_received_total", 0
            )
            assert after["pts_tail_reads_total"] >= 1
            assert after["pts_delivery_delay_seconds_count"] >= 1
            # The server wrote nothing itself: the appends were the other process's.
            assert after["pts_appends_total"] == 0


@pytest.mark.timeout(60)
async def test_pts_serve_no_metrics_turns_it_off(db_url: str) -> None:
    with run_pts_serve(db_url, "--no-metrics", env={"PTS_ADMIN_TOKEN": TOKEN}) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/metrics")).status_code == 404

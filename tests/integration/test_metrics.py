"""``GET /metrics`` over real HTTP, read with prometheus-client's own parser, while a
stream is driven and watched: the figures move as the work happens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, post
from litestar.params import FromPath
from litestar.response import Stream

from pts import Append, PersistentTextStreaming, PTSPlugin
from pts.flush import FlushPolicy
from pts.http.access import allow_everything
from tests.support.metrics import Scraper
from tests.support.servers import serve_app
from tests.support.sse import collect
from tests.support.waiting import until, until_stats

SENTENCES = [f"Sentence {i} of the answer, with ünïcödé. " for i in range(6)]


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[tuple[PersistentTextStreaming, Scraper, Any]]:
    pts = PersistentTextStreaming(
        dsn=db_url, flush=FlushPolicy(max_delay=0.05), sweeper=False, stale_after=120
    )
    gate = asyncio.Event()

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        for i, sentence in enumerate(SENTENCES):
            if i == len(SENTENCES) // 2:
                await gate.wait()  # half an answer, then wait for the test
            await append(sentence)

    @post("/drive/{stream_id:uuid}")
    async def drive(request: Request[Any, Any, Any], stream_id: FromPath[uuid.UUID]) -> Stream:
        return await pts.stream(request, stream_id, generate)

    app = Litestar([drive], plugins=[PTSPlugin(pts, authorize=allow_everything, metrics=True)])
    async with (
        serve_app(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        yield pts, Scraper(client), gate


async def test_the_figures_move_as_a_stream_is_driven_and_watched(
    served: tuple[PersistentTextStreaming, Scraper, asyncio.Event],
) -> None:
    pts, scraper, gate = served
    client = scraper.client
    before = await scraper.scrape()
    for name in ("pts_appends_total", "pts_persisted_bytes_total", "pts_subscribers"):
        assert before[name] == 0, name
    assert before["pts_flush_duration_seconds_count"] == 0
    assert before["pts_listener_connected"] == 1
    assert before["pts_draining"] == 0
    assert "process_cpu_seconds_total" in before  # the process's own figures too

    stream_id = await pts.create_stream()
    driving = asyncio.create_task(_drive(client, stream_id))
    await until_stats(pts, lambda s: s.appends >= 1, "the first half is persisted")
    watcher = asyncio.create_task(collect(client, f"/streams/{stream_id}/events"))
    await until_stats(pts, lambda s: s.subscribers == 1, "the SSE reader is subscribed")

    during = await scraper.scrape()
    assert during["pts_subscribers"] == 1
    assert during["pts_tails"] == 1
    assert during["pts_active_drives"] == 1
    assert during["pts_attached_drives"] == 1
    assert during["pts_appends_total"] >= 1
    assert during["pts_flush_duration_seconds_count"] == during["pts_appends_total"]
    assert during["pts_flush_size_bytes_sum"] == during["pts_persisted_bytes_total"]

    notified = pts.stats().notifications
    gate.set()
    driven = await asyncio.wait_for(driving, 15)
    watched = await asyncio.wait_for(watcher, 15)
    assert driven == "".join(SENTENCES)
    assert "".join(e.data for e in watched if e.event == "text") == driven
    await until_stats(pts, lambda s: s.subscribers == 0, "the SSE reader ended")
    await until_stats(pts, lambda s: s.notifications > notified, "notifications arrived")

    after = await scraper.scrape()
    size = len(driven.encode())
    assert after["pts_persisted_bytes_total"] == size
    assert after["pts_appends_total"] > during["pts_appends_total"]
    assert after["pts_flush_duration_seconds_count"] == after["pts_appends_total"]
    assert after["pts_flush_duration_seconds_bucket{le=+Inf}"] == after["pts_appends_total"]
    assert after["pts_flush_size_bytes_sum"] == size
    assert after["pts_notifications_received_total"] > during["pts_notifications_received_total"]
    # The second half reached the watcher through its tail, after a notification.
    assert after["pts_delivery_delay_seconds_count"] >= 1
    assert after["pts_tail_reads_total"] >= 1
    assert (after["pts_subscribers"], after["pts_active_drives"]) == (0, 0)
    assert after["pts_database_errors_total"] == 0
    # The figures are pts.stats(), nothing kept beside it.
    stats = pts.stats()
    assert after["pts_appends_total"] == stats.appends
    assert after["pts_notifications_received_total"] <= stats.notifications


async def test_openmetrics_when_the_scraper_asks_for_it(
    served: tuple[PersistentTextStreaming, Scraper, asyncio.Event],
) -> None:
    _pts, scraper, _gate = served
    response = await scraper.client.get(
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("application/openmetrics-text; version=1.0.0"), content_type
    assert content_type.count("charset") == 1, content_type
    assert response.text.rstrip().endswith("# EOF")
    assert "# TYPE pts_appends counter" in response.text


async def test_the_plugin_mounts_no_metrics_unless_asked(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False)
    app = Litestar(plugins=[PTSPlugin(pts, authorize=allow_everything)])
    async with serve_app(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        assert (await client.get("/metrics")).status_code == 404
        await until(lambda: pts.stats().open, "open")


async def _drive(client: httpx.AsyncClient, stream_id: uuid.UUID) -> str:
    async with client.stream("POST", f"/drive/{stream_id}") as response:
        assert response.status_code == 200
        return b"".join([c async for c in response.aiter_raw()]).decode()

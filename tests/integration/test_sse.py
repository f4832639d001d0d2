"""SSE subscribers over real HTTP: same text as the driver, exact resume, htmx fragments."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar

from pts import Append, PersistentTextStreaming, PTSPlugin, StreamStatus
from pts.flush import FlushPolicy
from tests.integration.test_driving import Harness, endless, make_app
from tests.support.servers import run_pts_serve, serve_app
from tests.support.sse import Event, collect, events
from tests.support.waiting import until_stats


@pytest.fixture
async def harness(db_url: str) -> AsyncIterator[Harness]:
    pts = PersistentTextStreaming(dsn=db_url, flush=FlushPolicy(max_delay=0.05), sweeper=False)
    ref: list[Harness] = []
    async with serve_app(make_app(pts, ref)) as base_url:
        h = Harness(pts, base_url)
        ref.append(h)
        try:
            yield h
        finally:
            await h.client.aclose()


TOKENS = [w + " " for w in ("Bonjour à tous. Voici 你好，世界！ et 🎉🎊 fin. " * 6).split(" ") if w]


def text_events(evts: list[Event]) -> list[Event]:
    return [e for e in evts if e.event == "text"]


async def test_sse_subscriber_sees_what_the_driver_saw(harness: Harness) -> None:
    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        for token in TOKENS:
            await append(token)
            await asyncio.sleep(0.003)

    harness.generate = generate
    stream_id = await harness.new_stream()
    subscriber = asyncio.create_task(collect(harness.client, f"/streams/{stream_id}/events"))
    async with harness.client.stream("POST", harness.drive_url(stream_id)) as response:
        driven = b"".join([c async for c in response.aiter_raw()]).decode()
    evts = await asyncio.wait_for(subscriber, 15)
    assert driven == "".join(TOKENS)
    assert "".join(e.data for e in text_events(evts)) == driven
    final = json.loads(evts[-1].data)
    assert evts[-1].event == "status"
    assert final["status"] == "done"
    assert final["size"] == len(driven.encode())
    # ids are the byte offsets after each event's text.
    position = 0
    for e in text_events(evts):
        position += len(e.data.encode())
        assert e.id == str(position)


async def test_reconnect_with_last_event_id_at_every_boundary(harness: Harness) -> None:
    store = harness.pts.store
    info = await store.create_stream(status=StreamStatus.STREAMING)
    whole = "Un café ☕ pour 👩‍💻 et 日本語。End\n".encode()
    # Appends cut inside multi-byte characters on purpose.
    cuts = [0, 5, 9, 13, 17, 22, 27, 31, len(whole)]
    live = asyncio.create_task(collect(harness.client, f"/streams/{info.id}/events"))
    await until_stats(harness.pts, lambda s: s.subscribers == 1, "the SSE reader is subscribed")
    for a, b in itertools.pairwise(cuts):
        reads = harness.pts.stats().tail_reads
        await store.append(info.id, whole[a:b], offset=a)
        # Each append reaches the subscriber as its own event: its tail read it.
        await until_stats(harness.pts, lambda s: s.tail_reads > reads, "read")  # noqa: B023
    await store.set_status(info.id, StreamStatus.DONE)
    evts = await asyncio.wait_for(live, 10)
    assert "".join(e.data for e in text_events(evts)) == whole.decode()
    ids = ["0"] + [e.id for e in text_events(evts) if e.id is not None]
    assert len(ids) > 4, ids  # several flushes, several resume points
    for last_id in ids:
        whole[: int(last_id)].decode()  # every id is a character boundary
    for last_id in ids:
        resumed = await collect(
            harness.client, f"/streams/{info.id}/events", headers={"Last-Event-ID": last_id}
        )
        got = "".join(e.data for e in text_events(resumed))
        assert whole[: int(last_id)].decode() + got == whole.decode(), last_id
    # ?offset= works the same, and Last-Event-ID wins over it.
    offset = ids[2]
    by_query = await collect(harness.client, f"/streams/{info.id}/events?offset={offset}")
    assert "".join(e.data for e in text_events(by_query)) == whole[int(offset) :].decode()
    both = await collect(
        harness.client, f"/streams/{info.id}/events?offset=0", headers={"Last-Event-ID": offset}
    )
    assert [e.data for e in text_events(both)] == [e.data for e in text_events(by_query)]


async def test_html_format_escapes_for_htmx(harness: Harness) -> None:
    writer = await harness.pts.create_write_stream()
    await writer.write('<script>alert("x")</script> & <img src=x onerror=alert(1)>. ')
    await writer.close()
    evts = await collect(harness.client, f"/streams/{writer.stream_id}/events?format=html")
    html = "".join(e.data for e in text_events(evts))
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html
    assert "&amp;" in html
    assert evts[-1].event == "status"
    assert evts[-1].data == "done"


async def test_status_events_and_keepalive(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False)
    app = Litestar(plugins=[PTSPlugin(pts, authorize=lambda *_: True, sse_keepalive=0.1)])
    async with serve_app(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        stream_id = await pts.create_stream()
        seen: list[Event | str] = []

        async def watch() -> None:
            async for item in events(client, f"/streams/{stream_id}/events"):
                seen.append(item)

        watcher = asyncio.create_task(watch())
        while ": keep-alive" not in seen:
            await asyncio.sleep(0.02)
        await pts.cancel(stream_id, reason="nobody asked")
        await asyncio.wait_for(watcher, 10)
    statuses = [json.loads(e.data) for e in seen if isinstance(e, Event) and e.event == "status"]
    assert statuses[0]["status"] == "pending"
    assert statuses[-1] == {
        "status": "aborted",
        "size": 0,
        "abort_reason": "nobody asked",
        "error": None,
    }


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/streams/not-a-uuid/events", {}, 400),
        (f"/streams/{uuid.uuid4()}/events", {}, 404),
        ("/streams/{id}/events?offset=999", {}, 400),
        ("/streams/{id}/events", {"Last-Event-ID": "abc"}, 400),
        ("/streams/{id}/events?offset=-1", {}, 400),
    ],
)
async def test_bad_subscriptions_are_clear_4xx(
    harness: Harness, path: str, headers: dict[str, str], status: int
) -> None:
    writer = await harness.pts.create_write_stream()
    await writer.write("short.")
    await writer.close()
    response = await harness.client.get(path.format(id=writer.stream_id), headers=headers)
    assert response.status_code == status
    assert "error" in response.json()


@pytest.mark.timeout(120)
async def test_driven_in_one_process_watched_and_cancelled_in_another(
    harness: Harness, db_url: str
) -> None:
    cancelled = asyncio.Event()
    harness.generate = endless("Sentence {}. ", 0.01, cancelled)
    stream_id = await harness.new_stream()
    token = "test-admin-token"
    env = {**os.environ, "PTS_ADMIN_TOKEN": token}
    auth = {"Authorization": f"Bearer {token}"}
    with run_pts_serve(db_url, "--workers", "2", env=env) as other:
        async with httpx.AsyncClient(base_url=other.url, timeout=30) as client:
            driving = asyncio.create_task(
                harness.client.post(harness.drive_url(stream_id), timeout=60)
            )
            watched: list[Event] = []

            async def watch() -> None:
                async for item in events(client, f"/streams/{stream_id}/events", auth):
                    if isinstance(item, Event):
                        watched.append(item)

            watcher = asyncio.create_task(watch())
            while len(text_events(watched)) < 3:
                await asyncio.sleep(0.02)
            cancel = await client.post(f"/streams/{stream_id}/cancel", headers=auth)
            assert cancel.status_code == 200
            await asyncio.wait_for(cancelled.wait(), 10)
            await asyncio.wait_for(watcher, 10)
            driven = (await asyncio.wait_for(driving, 10)).text
    body = await harness.pts.get_stream_body(stream_id)
    assert body.status is StreamStatus.ABORTED
    watched_text = "".join(e.data for e in text_events(watched))
    assert watched_text == body.text
    assert driven.startswith(body.text)
    assert json.loads(watched[-1].data)["status"] == "aborted"

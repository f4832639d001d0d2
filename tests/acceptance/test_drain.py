"""SIGTERM drains: a rolling deploy loses no answer (issue 15).

Two server processes share one database, as two nodes behind a load balancer.
The first is sent SIGTERM mid-answer: its answer runs to the end (``done``,
byte-exact, one generation), its subscriber is let go at once and reads the
rest from the second node, and the process exits when the answer is over.
Every wait is on a condition (a line, an event, an exit), under a hang guard.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar, Request, post
from litestar.params import FromPath
from litestar.response import Stream
from litestar.testing import AsyncTestClient

from pts import Append, PersistentTextStreaming, StreamStatus
from pts.plugin import PTSPlugin, allow_everything
from pts.testing import MemoryStore
from tests.support.servers import ServerProcess, run_module, run_pts_serve
from tests.support.shutdown_app import ANSWER
from tests.support.sse import Event, events
from tests.support.waiting import until, until_stats

GUARD = 60.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def stream_row(dsn: str, stream_id: uuid.UUID) -> tuple[str, int, str | None]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT status, size, error FROM pts.streams WHERE id = %s", (stream_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def follow(
    client: httpx.AsyncClient, stream_id: uuid.UUID, last_id: str | None
) -> AsyncIterator[Event]:
    headers = {} if last_id is None else {"Last-Event-ID": last_id}
    async for item in events(client, f"/streams/{stream_id}/events", headers):
        if isinstance(item, Event):
            yield item


@pytest.mark.timeout(150)
async def test_sigterm_mid_answer_finishes_it_and_hands_the_subscriber_over(db_url: str) -> None:
    env = {"PTS_DATABASE_URL": db_url, "PTS_DRAIN_TIMEOUT": "90", "PTS_SHUTDOWN_GRACE": "1"}
    with (
        run_module("tests.support.shutdown_app", env=env) as old,
        run_module("tests.support.shutdown_app", env=env) as new,
    ):
        async with (
            httpx.AsyncClient(base_url=old.url, timeout=GUARD) as to_old,
            httpx.AsyncClient(base_url=new.url, timeout=GUARD) as to_new,
        ):
            created = await to_old.post("/streams", json={})
            assert created.status_code == 201, created.text
            stream_id = uuid.UUID(created.json()["id"])
            first_text, watching = asyncio.Event(), asyncio.Event()
            handed_over: list[bool] = []  # the old node let the subscriber go mid-answer

            async def drive() -> bytes:
                body = b""
                async with to_old.stream("POST", f"/answer/{stream_id}") as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_raw():
                        body += chunk
                        first_text.set()
                return body

            async def watch() -> tuple[str, int]:
                text, last_id, connections = "", None, 0
                for client in (to_old, to_new):  # to the old node, then (reconnected) the new
                    connections += 1
                    async for event in follow(client, stream_id, last_id):
                        if event.event == "text":
                            text += event.data
                            last_id = event.id
                            watching.set()
                        if event.event == "status" and json.loads(event.data)["status"] == "done":
                            return text, connections
                    handed_over.append(not driving.done())
                return text, connections

            driving = asyncio.create_task(drive())
            watcher = asyncio.create_task(watch())
            try:
                async with asyncio.timeout(GUARD):
                    await first_text.wait()
                    await watching.wait()
                old.process.send_signal(signal.SIGTERM)
                line = old.wait_for_line("draining:")
                assert "waiting for 1 live answer, up to 90 s" in line, line
                body = await asyncio.wait_for(driving, GUARD)
                seen, connections = await asyncio.wait_for(watcher, GUARD)
            finally:
                for task in (driving, watcher):
                    task.cancel()
            assert await old.exited() == 0, old.output()
    assert body.decode() == ANSWER
    assert seen == ANSWER
    assert connections == 2
    assert handed_over == [True]
    assert stream_row(db_url, stream_id) == (StreamStatus.DONE, len(ANSWER.encode()), None)
    assert old.output().count(f"generation {stream_id}") == 1
    assert f"generation {stream_id}" not in new.output()
    assert_clean(old)


def assert_clean(server: ServerProcess) -> None:
    text = server.output()
    assert "Traceback" not in text, text
    assert "Exception in ASGI application" not in text, text


# -- in process: what a draining component answers --------------------------------------


async def _never(_request: Request[Any, Any, Any], _stream_id: uuid.UUID, append: Append) -> None:
    await append("never written")


async def test_a_drive_asked_of_a_draining_server_gets_503_with_retry_after() -> None:
    pts = PersistentTextStreaming(store=MemoryStore(), sweeper=False)

    @post("/drive/{stream_id:uuid}")
    async def drive(request: Request[Any, Any, Any], stream_id: FromPath[uuid.UUID]) -> Stream:
        return await pts.stream(request, stream_id, _never)

    app = Litestar([drive], plugins=[PTSPlugin(pts, authorize=allow_everything)])
    async with AsyncTestClient(app) as client:
        stream_id = await pts.create_stream()
        pts.begin_stopping(drain=True)
        answer = await client.post(f"/drive/{stream_id}")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"] == "draining"
        # Left for another node to drive.
        assert (await pts.store.get_stream(stream_id)).status is StreamStatus.PENDING
        assert pts.stats().stopping


async def test_a_drain_ends_the_subscriptions_at_once_and_refuses_new_ones_after_a_read() -> None:
    async with PersistentTextStreaming(store=MemoryStore(), sweeper=False) as pts:
        writer = await pts.create_write_stream()
        await writer.write("Persisted before the drain. ")  # a sentence end: flushed
        await until(lambda: writer.size > 0, "the first sentence is persisted")

        async def texts() -> str:
            return "".join([update.text async for update in pts.subscribe(writer.stream_id)])

        live = asyncio.create_task(texts())
        await until_stats(pts, lambda s: s.subscribers == 1, "the subscriber is attached")
        pts.begin_stopping(drain=True)
        assert await asyncio.wait_for(live, GUARD) == "Persisted before the drain. "
        assert await asyncio.wait_for(texts(), GUARD) == "Persisted before the drain. "
        # The answer itself goes on: the drain waits for it.
        await writer.write("And the rest.")
        await writer.close()
        assert (await pts.store.read(writer.stream_id)).data.endswith(b"And the rest.")


# -- pts serve --workers N: plain uvicorn workers, drained by the plugin -----------------


@pytest.mark.timeout(90)
async def test_sigterm_lets_a_workers_subscribers_go_at_once(db_url: str) -> None:
    # Without the plugin's drain, each worker would hold its SSE response open
    # for the whole drain time (600 s) before exiting: the hang guard fails first.
    env = {"PTS_DRAIN_TIMEOUT": "600"}
    with run_pts_serve(db_url, "--no-auth", "--workers", "2", env=env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=GUARD) as client:
            created = await client.post("/streams", json={})
            assert created.status_code == 201, created.text
            stream_id = uuid.UUID(created.json()["id"])
            seen: list[Event] = []
            attached = asyncio.Event()

            async def watch() -> None:
                async for event in follow(client, stream_id, None):
                    seen.append(event)
                    attached.set()

            watcher = asyncio.create_task(watch())
            try:
                async with asyncio.timeout(GUARD):
                    await attached.wait()
                server.process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(watcher, GUARD)  # the response ended
            finally:
                watcher.cancel()
            assert await server.exited(GUARD) == 0, server.output()
    assert [json.loads(e.data)["status"] for e in seen if e.event == "status"] == ["pending"]
    assert_clean(server)

"""Ctrl+C during a live answer: ``pts demo`` and ``pts serve`` in subprocesses, real signals.

The first SIGINT says what the server waits for and lets live answers finish
within the shutdown grace; a second one stops the process at once, with no
traceback, and the answers it cut end in the database with a clear reason.
Every wait is on a condition (a line on stderr, a row in the database, the
process's exit), bounded by a hang guard.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from example_chat import db as demo_db
from pts.core import PersistentTextStreaming
from pts.errors import ConfigurationError, StreamClosed
from pts.http.shutdown import GRACE_OVER, INTERRUPTED
from pts.live.subscribe import Update
from pts.models import StreamStatus
from tests.support.demo import Browser
from tests.support.servers import ServerProcess, run_module, run_pts_demo, run_pts_serve

GUARD = 30.0
"""Seconds any single wait may take before the test is declared hung."""

STOP_BOUND = 2.0
"""The issue's bound: after the second Ctrl+C, the process is gone within this (seconds)."""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def stream_row(dsn: str, stream_id: uuid.UUID) -> tuple[str, str | None]:
    """(status, error) of a stream, straight from the database."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT status, error FROM pts.streams WHERE id = %s", (stream_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def assert_no_traceback(server: ServerProcess) -> None:
    text = server.output()
    assert "Traceback" not in text, text
    assert "Exception in ASGI application" not in text, text


# -- pts demo -------------------------------------------------------------------------


@asynccontextmanager
async def demo_process(
    db_url: str, *, tokens_per_second: float, grace: float | None = None
) -> AsyncIterator[ServerProcess]:
    await demo_db.migrate(db_url)
    env = {
        "PTS_DATABASE_URL": db_url,
        "PTS_DEMO_MODEL": "demo",
        "PTS_DEMO_TOKENS_PER_SECOND": str(tokens_per_second),
    }
    if grace is not None:
        env["PTS_SHUTDOWN_GRACE"] = str(grace)
    with run_pts_demo(db_url, env=env) as server:
        yield server


@dataclass
class LiveAnswer:
    """An answer being driven by a browser, with a viewer subscribed to it over SSE."""

    stream_id: uuid.UUID
    driving: asyncio.Task[bytes]
    viewer: asyncio.Task[str]


async def _read_all(response: httpx.Response) -> bytes:
    body = b""
    try:
        async for chunk in response.aiter_raw():
            body += chunk
    except httpx.HTTPError:
        pass  # cut off: the server went away
    return body


@asynccontextmanager
async def _followed(
    client: httpx.AsyncClient, stream_id: uuid.UUID, drive_url: str, headers: dict[str, str]
) -> AsyncIterator[LiveAnswer]:
    """Drive ``stream_id`` by POSTing ``drive_url`` until its first text, and watch it over SSE."""
    first_text = asyncio.Event()

    async def drive() -> bytes:
        async with client.stream("POST", drive_url, headers=headers) as response:
            assert response.status_code == 200
            body = b""
            try:
                async for chunk in response.aiter_raw():
                    body += chunk
                    first_text.set()
            except httpx.HTTPError:
                pass
            return body

    async def view() -> str:
        async with client.stream("GET", f"/streams/{stream_id}/events") as response:
            assert response.status_code == 200
            return (await _read_all(response)).decode()

    driving = asyncio.create_task(drive())
    viewer = asyncio.create_task(view())
    try:
        async with asyncio.timeout(GUARD):
            await first_text.wait()
        yield LiveAnswer(stream_id, driving, viewer)
    finally:
        for task in (driving, viewer):
            task.cancel()
        await asyncio.gather(driving, viewer, return_exceptions=True)


@asynccontextmanager
async def live_answer(browser: Browser, db_url: str) -> AsyncIterator[LiveAnswer]:
    """Send a message, drive its answer until its first text, and watch it over SSE."""
    chat_id = await browser.new_chat()
    sent = await browser.send(chat_id, "Tell me about Ctrl+C.")
    assert sent.status_code == 200, sent.text
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT stream_id FROM pts_demo.messages WHERE chat_id = %s AND role = 'assistant'",
            (chat_id,),
        ).fetchone()
    assert row is not None
    stream_id: uuid.UUID = row[0]
    drive_url = f"/chats/{chat_id}/answers/{stream_id}/stream"
    async with _followed(browser.client, stream_id, drive_url, browser.csrf) as live:
        yield live


@pytest.mark.timeout(90)
async def test_demo_second_ctrl_c_stops_at_once_and_ends_the_answer(db_url: str) -> None:
    # 3 tokens a second: the answer lasts far longer than the test.
    async with (
        demo_process(db_url, tokens_per_second=3, grace=60) as server,
        Browser(server.url) as browser,
        live_answer(browser, db_url) as answer,
    ):
        server.interrupt()
        line = server.wait_for_line("waiting for")
        assert "waiting for 1 live answer, up to 60 s; Ctrl+C again to stop now" in line
        assert stream_row(db_url, answer.stream_id)[0] == StreamStatus.STREAMING
        server.interrupt()
        start = time.monotonic()
        code = await server.exited()
        stopped_after = time.monotonic() - start
        assert code == 0, server.output()
        assert stopped_after < STOP_BOUND, f"stopped {stopped_after:.2f} s after the second SIGINT"
        # Ended in the database by the process itself (no sweeper runs any more).
        status, error = stream_row(db_url, answer.stream_id)
        assert (status, error) == (StreamStatus.ERROR, INTERRUPTED)
        # The viewer saw the end (its final status event), then its response ended.
        seen = await asyncio.wait_for(answer.viewer, GUARD)
        assert '"status": "error"' in seen, seen + server.output()
        assert INTERRUPTED in seen
        await asyncio.wait_for(answer.driving, GUARD)
    assert_no_traceback(server)
    assert server.output().count("waiting for") == 1


@pytest.mark.timeout(90)
async def test_demo_one_ctrl_c_lets_an_answer_finish_within_the_grace(db_url: str) -> None:
    # A demo answer is a few hundred tokens: well within a minute at 40 tokens a second.
    async with (
        demo_process(db_url, tokens_per_second=40, grace=60) as server,
        Browser(server.url) as browser,
        live_answer(browser, db_url) as answer,
    ):
        server.interrupt()
        server.wait_for_line("waiting for 1 live answer")
        code = await server.exited(60)
        assert code == 0, server.output()
        assert stream_row(db_url, answer.stream_id) == (StreamStatus.DONE, None)
        body = (await asyncio.wait_for(answer.driving, GUARD)).decode()
        with psycopg.connect(db_url) as conn:
            row = conn.execute(
                "SELECT text FROM pts.stream_bodies WHERE id = %s", (answer.stream_id,)
            ).fetchone()
        assert row is not None
        assert row[0] == body  # the whole answer, as the driving browser got it
    assert_no_traceback(server)


@pytest.mark.timeout(90)
async def test_demo_an_answer_longer_than_the_grace_ends_with_the_reason(db_url: str) -> None:
    async with (
        demo_process(db_url, tokens_per_second=3, grace=1) as server,
        Browser(server.url) as browser,
        live_answer(browser, db_url) as answer,
    ):
        server.interrupt()
        server.wait_for_line("waiting for 1 live answer, up to 1 s")
        code = await server.exited()
        assert code == 0, server.output()
        status, error = stream_row(db_url, answer.stream_id)
        assert (status, error) == (StreamStatus.ERROR, GRACE_OVER.format(grace=1.0))
        seen = await asyncio.wait_for(answer.viewer, GUARD)
        assert '"status": "error"' in seen, seen + server.output()
    assert_no_traceback(server)


@pytest.mark.timeout(90)
async def test_demo_second_ctrl_c_ends_an_answer_the_server_drives(db_url: str) -> None:
    # No browser drives this answer: the demo's server does, after UNCLAIMED_AFTER.
    async with (
        demo_process(db_url, tokens_per_second=3, grace=60) as server,
        Browser(server.url) as browser,
    ):
        chat_id = await browser.new_chat()
        assert (await browser.send(chat_id, "Nobody drives this.")).status_code == 200
        with psycopg.connect(db_url) as conn:
            row = conn.execute(
                "SELECT stream_id FROM pts_demo.messages WHERE chat_id = %s AND role = 'assistant'",
                (chat_id,),
            ).fetchone()
        assert row is not None
        stream_id: uuid.UUID = row[0]
        async with asyncio.timeout(GUARD):
            while stream_row(db_url, stream_id)[0] != StreamStatus.STREAMING:
                await asyncio.sleep(0.1)
        server.interrupt()
        server.wait_for_line("waiting for 1 live answer, up to 60 s")
        server.interrupt()
        assert await server.exited() == 0, server.output()
        assert stream_row(db_url, stream_id) == (StreamStatus.ERROR, INTERRUPTED)
    assert_no_traceback(server)


# -- an app with endless answers, served as pts serve serves its app ---------------------


@contextmanager
def app_process(db_url: str, *, grace: float) -> Iterator[ServerProcess]:
    """tests/support/shutdown_app.py, served by pts.http.shutdown.run in a subprocess."""
    env = {"PTS_DATABASE_URL": db_url, "PTS_SHUTDOWN_GRACE": str(grace)}
    with run_module("tests.support.shutdown_app", env=env) as s:
        yield s


@asynccontextmanager
async def driven_answer(client: httpx.AsyncClient) -> AsyncIterator[LiveAnswer]:
    """A stream created, driven until its first text, and watched over SSE."""
    created = await client.post("/streams", json={})
    assert created.status_code == 201, created.text
    stream_id = uuid.UUID(created.json()["id"])
    async with _followed(client, stream_id, f"/drive/{stream_id}", {}) as live:
        yield live


@pytest.mark.timeout(90)
async def test_second_ctrl_c_ends_driven_and_background_answers_at_once(db_url: str) -> None:
    with app_process(db_url, grace=60) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=GUARD) as client,
            driven_answer(client) as answer,
        ):
            started = await client.post("/background")
            assert started.status_code == 201, started.text
            background = uuid.UUID(started.json()["id"])
            server.interrupt()
            line = server.wait_for_line("waiting for")
            assert "waiting for 2 live answers, up to 60 s; Ctrl+C again to stop now" in line
            server.interrupt()
            start = time.monotonic()
            assert await server.exited() == 0, server.output()
            stopped_after = time.monotonic() - start
            assert stopped_after < STOP_BOUND, f"stopped {stopped_after:.2f} s after the SIGINT"
            for stream_id in (answer.stream_id, background):
                assert stream_row(db_url, stream_id) == (StreamStatus.ERROR, INTERRUPTED)
            seen = await asyncio.wait_for(answer.viewer, GUARD)
            assert '"status": "error"' in seen, seen + server.output()
    assert_no_traceback(server)


@pytest.mark.timeout(90)
async def test_one_ctrl_c_delivered_twice_still_waits(db_url: str) -> None:
    # `uv run` without a terminal forwards the SIGINT its process group already got:
    # two signals at once are one Ctrl+C.
    with app_process(db_url, grace=60) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=GUARD) as client,
            driven_answer(client) as answer,
        ):
            server.interrupt()
            server.interrupt()
            server.wait_for_line("waiting for 1 live answer, up to 60 s")
            assert server.process.poll() is None
            assert stream_row(db_url, answer.stream_id)[0] == StreamStatus.STREAMING
            server.interrupt()  # a real second Ctrl+C
            assert await server.exited() == 0, server.output()
            assert stream_row(db_url, answer.stream_id) == (StreamStatus.ERROR, INTERRUPTED)
    assert_no_traceback(server)


# -- pts serve: subscribers do not keep it alive ---------------------------------------


@pytest.mark.timeout(90)
async def test_pts_serve_ends_its_subscribers_on_ctrl_c(db_url: str) -> None:
    with run_pts_serve(db_url, "--no-auth") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=GUARD) as client:
            created = await client.post("/streams", json={})
            assert created.status_code == 201, created.text
            stream_id = created.json()["id"]
            put = await client.put("/v1/stream/watched", headers={"content-type": "text/plain"})
            assert put.status_code == 201, put.text
            ready = [asyncio.Event(), asyncio.Event()]

            async def follow(url: str, ready: asyncio.Event) -> str:
                body = b""
                async with client.stream("GET", url) as response:
                    assert response.status_code == 200
                    try:
                        async for chunk in response.aiter_raw():
                            body += chunk
                            ready.set()
                    except httpx.HTTPError:
                        pass
                return body.decode()

            # SSE on a pts stream nobody drives, and on a protocol stream nobody appends to.
            followers = [
                asyncio.create_task(follow(f"/streams/{stream_id}/events", ready[0])),
                asyncio.create_task(follow("/v1/stream/watched?offset=-1&live=sse", ready[1])),
            ]
            try:
                async with asyncio.timeout(GUARD):
                    for event in ready:
                        await event.wait()
                server.interrupt()
                assert await server.exited() == 0, server.output()
                pts_events, protocol_events = await asyncio.wait_for(
                    asyncio.gather(*followers), GUARD
                )
            finally:
                for task in followers:
                    task.cancel()
    assert '"status": "pending"' in pts_events
    assert "event: control" in protocol_events
    assert "waiting for" not in server.output()  # nothing to wait for: it just stopped
    assert_no_traceback(server)


# -- the parts, in process ----------------------------------------------------------------


async def _updates(pts: PersistentTextStreaming, stream_id: uuid.UUID) -> list[Update]:
    return [update async for update in pts.subscribe(stream_id)]


async def test_stopping_ends_writers_and_subscriptions_after_a_last_read(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url, sweeper=False) as pts:
        writer = await pts.create_write_stream()
        told: list[StreamStatus] = []
        writer.on_remote_close = told.append
        await writer.write("Persisted. Still buffered")
        idle_id = await pts.create_stream()
        live = asyncio.create_task(_updates(pts, writer.stream_id))
        idle = asyncio.create_task(_updates(pts, idle_id))
        async with asyncio.timeout(GUARD):
            while pts.stats().subscribers < 2:
                await asyncio.sleep(0.01)
        assert pts.stats().writers == 1
        await pts.stop_answers(INTERRUPTED, GUARD)
        assert pts.stats().writers == 0
        assert told == [StreamStatus.ERROR]  # its owner is told to stop
        with pytest.raises(StreamClosed):
            await writer.write("more")
        pts.end_subscriptions()
        live_updates, idle_updates = await asyncio.wait_for(asyncio.gather(live, idle), GUARD)
        # The subscriber of the cut stream saw all its text and its end...
        assert "".join(u.text for u in live_updates) == "Persisted. Still buffered"
        last = live_updates[-1]
        assert (last.status, last.finished, last.error) == (StreamStatus.ERROR, True, INTERRUPTED)
        # ...the other one just ended, as does one that starts now (after one read).
        assert [(u.status, u.finished) for u in idle_updates] == [(StreamStatus.PENDING, False)]
        late = await asyncio.wait_for(_updates(pts, idle_id), GUARD)
        assert [(u.status, u.finished) for u in late] == [(StreamStatus.PENDING, False)]


def test_the_shutdown_grace_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PersistentTextStreaming().shutdown_grace == 5.0
    monkeypatch.setenv("PTS_SHUTDOWN_GRACE", "12.5")
    assert PersistentTextStreaming().shutdown_grace == 12.5
    assert PersistentTextStreaming(shutdown_grace=0).shutdown_grace == 0
    for bad in ("-1", "nan", "inf", "soon"):
        monkeypatch.setenv("PTS_SHUTDOWN_GRACE", bad)
        with pytest.raises(ConfigurationError, match="PTS_SHUTDOWN_GRACE"):
            PersistentTextStreaming()
    with pytest.raises(ValueError, match="shutdown_grace"):
        PersistentTextStreaming(shutdown_grace=-1)

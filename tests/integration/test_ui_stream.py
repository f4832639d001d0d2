"""AI SDK UI message streams through a real server: ``stream_ui`` and ``resume_ui``.

The driving read, what is stored (deltas merged per sentence), resume from any
point, cancel, and bad input; against Postgres, over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath, FromQuery

from pts import PersistentTextStreaming, PTSPlugin, StreamStatus
from pts.flush import FlushPolicy
from pts.ui import UIWriter
from tests.support.servers import serve_app
from tests.support.sse import EventStreamParser, Event

NEVER = 3600.0
JSON = "application/json"

GenerateUI = Callable[[Request[Any, Any, Any], uuid.UUID, UIWriter], Awaitable[None]]


class Harness:
    """A real server with the three routes of an AI SDK app, driving whatever a test sets."""

    def __init__(self, pts: PersistentTextStreaming, base_url: str) -> None:
        self.pts = pts
        self.generate: GenerateUI | None = None
        self.calls = 0
        self.client = httpx.AsyncClient(base_url=base_url, timeout=20)

    async def new_stream(self) -> uuid.UUID:
        return await self.pts.create_stream(content_type=JSON)

    async def wait_finished(self, stream_id: uuid.UUID) -> StreamStatus:
        async def poll() -> StreamStatus:
            while not (info := await self.pts.get_stream(stream_id)).finished:
                await asyncio.sleep(0.01)
            return info.status

        return await asyncio.wait_for(poll(), 20)

    async def stored(self, stream_id: uuid.UUID) -> list[dict[str, Any]]:
        """The stream's stored chunks, read as the JSON array Durable Streams clients see."""
        read = await self.pts.store.read(stream_id, 0)
        value = json.loads(b"[" + read.data[:-1] + b"]")
        assert isinstance(value, list)
        return value


def make_app(pts: PersistentTextStreaming, ref: list[Harness]) -> Litestar:
    @post("/chat/{stream_id:uuid}")
    async def chat(request: Request[Any, Any, Any], stream_id: FromPath[uuid.UUID]) -> Response[Any]:
        harness = ref[0]

        async def generate(req: Request[Any, Any, Any], sid: uuid.UUID, ui: UIWriter) -> None:
            harness.calls += 1
            assert harness.generate is not None
            await harness.generate(req, sid, ui)

        return await pts.stream_ui(request, stream_id, generate)

    @get("/chat/{stream_id:uuid}/stream")
    async def resume(stream_id: FromPath[uuid.UUID], replay: FromQuery[bool] = False) -> Response[Any]:
        return await pts.resume_ui(stream_id, replay_finished=replay)

    @get("/chat/none/stream")
    async def resume_nothing() -> Response[Any]:
        return await pts.resume_ui(None)

    @post("/chat/{stream_id:uuid}/stop", status_code=200)
    async def stop(stream_id: FromPath[uuid.UUID]) -> dict[str, str]:
        info = await pts.cancel(stream_id)
        return {"status": str(info.status)}

    return Litestar(
        [chat, resume, resume_nothing, stop], plugins=[PTSPlugin(pts, authorize=lambda *_: True)]
    )


@pytest.fixture
async def harness(db_url: str) -> AsyncIterator[Harness]:
    pts = PersistentTextStreaming(
        dsn=db_url, flush=FlushPolicy(max_delay=NEVER), stale_after=120, sweep_interval=60
    )
    ref: list[Harness] = []
    async with serve_app(make_app(pts, ref)) as base_url:
        h = Harness(pts, base_url)
        ref.append(h)
        try:
            yield h
        finally:
            await h.client.aclose()


class Read:
    """One SSE read of a UI message stream, chunk by chunk (``[DONE]`` as the string)."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, Any] | str] = []
        self.headers: httpx.Headers | None = None

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [c for c in self.chunks if isinstance(c, dict)]

    @property
    def types(self) -> list[str]:
        return [c["type"] if isinstance(c, dict) else c for c in self.chunks]


async def read_sse(
    response: httpx.Response, read: Read, until: Callable[[Read], bool] | None = None
) -> Read:
    """Parse ``response`` into ``read`` until it ends (or ``until(read)`` holds)."""
    read.headers = response.headers
    parser = EventStreamParser()
    async for piece in response.aiter_bytes():
        for item in parser.feed(piece):
            if isinstance(item, Event):
                read.chunks.append("[DONE]" if item.data == "[DONE]" else json.loads(item.data))
        if until is not None and until(read):
            return read
    return read


async def drive(harness: Harness, stream_id: uuid.UUID) -> Read:
    read = Read()
    async with harness.client.stream("POST", f"/chat/{stream_id}") as response:
        assert response.status_code == 200, await response.aread()
        await read_sse(response, read)
    return read


async def resume(harness: Harness, stream_id: uuid.UUID, query: str = "") -> Read:
    read = Read()
    async with harness.client.stream("GET", f"/chat/{stream_id}/stream{query}") as response:
        assert response.status_code == 200, await response.aread()
        await read_sse(response, read)
    return read


def rebuild(chunks: list[dict[str, Any]]) -> dict[str, str]:
    """The text of each text and reasoning part, by part id (what a client assembles)."""
    parts: dict[str, str] = {}
    for chunk in chunks:
        if chunk["type"] in ("text-start", "reasoning-start"):
            assert chunk["id"] not in parts, f"part {chunk['id']} started twice"
            parts[chunk["id"]] = ""
        elif chunk["type"] in ("text-delta", "reasoning-delta"):
            parts[chunk["id"]] += chunk["delta"]
    return parts


def assert_headers(read: Read) -> None:
    assert read.headers is not None
    assert read.headers["content-type"] == "text/event-stream", read.headers["content-type"]
    assert read.headers["cache-control"] == "no-cache"
    assert read.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert read.headers["x-accel-buffering"] == "no"


# -- the driving read ----------------------------------------------------------------------


async def test_the_driving_read_gets_start_parts_finish_and_done(harness: Harness) -> None:
    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.reasoning("Let me think. ")
        await ui.reasoning("Done.")
        await ui.text("Hello ")
        await ui.text("world.")
        await ui.write({"type": "data-weather", "data": {"city": "Paris", "temp": 21}})

    harness.generate = generate
    stream_id = await harness.new_stream()
    read = await drive(harness, stream_id)
    assert_headers(read)
    assert read.chunks == [
        {"type": "start", "messageId": str(stream_id)},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "Let me think. "},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "Done."},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Hello "},
        {"type": "text-delta", "id": "text-2", "delta": "world."},
        {"type": "text-end", "id": "text-2"},
        {"type": "data-weather", "data": {"city": "Paris", "temp": 21}},
        {"type": "finish"},
        "[DONE]",
    ]
    assert await harness.wait_finished(stream_id) is StreamStatus.DONE
    stored = await harness.stored(stream_id)
    assert rebuild(stored) == rebuild(read.objects)
    assert [c["type"] for c in stored if "delta" not in c] == [
        c["type"] for c in read.objects if "delta" not in c
    ]

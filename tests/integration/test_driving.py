"""Dual delivery through a real HTTP server: the driving client gets every token at once,
Postgres gets sentences, and the generation survives the client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, Response, post
from litestar.params import FromPath

from pts import Append, PersistentTextStreaming, PTSPlugin, StreamStatus
from pts.flush import FlushPolicy
from pts.models import StreamInfo
from tests.support.servers import serve_app

NEVER = 3600.0

Generate = Callable[[Request[Any, Any, Any], uuid.UUID, Append], Awaitable[None]]


class Harness:
    """A real server whose HTTP action drives streams with whatever generator a test sets."""

    def __init__(self, pts: PersistentTextStreaming, base_url: str) -> None:
        self.pts = pts
        self.base_url = base_url
        self.generate: Generate | None = None
        self.calls = 0
        self.client = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def new_stream(self) -> uuid.UUID:
        return await self.pts.create_stream()

    def drive_url(self, stream_id: uuid.UUID) -> str:
        return f"/drive/{stream_id}"

    async def wait_finished(self, stream_id: uuid.UUID, guard: float = 10) -> StreamInfo:
        async def poll() -> StreamInfo:
            while not (info := await self.pts.get_stream(stream_id)).finished:
                await asyncio.sleep(0.02)
            return info

        return await asyncio.wait_for(poll(), guard)


def endless(template: str, pause: float, cancelled: asyncio.Event) -> Generate:
    """A generator that appends ``template.format(i)`` forever; sets ``cancelled`` when stopped."""

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        try:
            for i in range(100_000):
                await append(template.format(i))
                await asyncio.sleep(pause)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return generate


def make_app(pts: PersistentTextStreaming, harness_ref: list[Harness]) -> Litestar:
    @post("/drive/{stream_id:uuid}")
    async def drive(
        request: Request[Any, Any, Any], stream_id: FromPath[uuid.UUID]
    ) -> Response[Any]:
        harness = harness_ref[0]

        async def generate(req: Request[Any, Any, Any], sid: uuid.UUID, append: Append) -> None:
            harness.calls += 1
            assert harness.generate is not None
            await harness.generate(req, sid, append)

        return await pts.stream(request, stream_id, generate)

    return Litestar([drive], plugins=[PTSPlugin(pts, authorize=lambda *_: True)])


@pytest.fixture
async def harness(db_url: str) -> AsyncIterator[Harness]:
    pts = PersistentTextStreaming(
        dsn=db_url,
        flush=FlushPolicy(max_delay=NEVER),
        # Fallbacks far beyond any test: whatever happens fast here happened via NOTIFY.
        stale_after=120,
        sweep_interval=60,
    )
    ref: list[Harness] = []
    async with serve_app(make_app(pts, ref)) as base_url:
        h = Harness(pts, base_url)
        ref.append(h)
        try:
            yield h
        finally:
            await h.client.aclose()


async def test_first_token_reaches_the_client_before_the_first_flush(harness: Harness) -> None:
    gate = asyncio.Event()

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        await append("Hello")
        await gate.wait()
        await append(" world.")

    harness.generate = generate
    stream_id = await harness.new_stream()
    async with harness.client.stream("POST", harness.drive_url(stream_id)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["transfer-encoding"] == "chunked"
        chunks = response.aiter_raw()
        first = await asyncio.wait_for(anext(chunks), 5)
        assert first == b"Hello"
        # The token is at the client; nothing is in the database yet.
        info = await harness.pts.get_stream(stream_id)
        assert info.status is StreamStatus.STREAMING
        assert info.size == 0
        gate.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert first + rest == b"Hello world."
    done = await harness.wait_finished(stream_id)
    assert done.status is StreamStatus.DONE
    assert (await harness.pts.get_stream_body(stream_id)).text == "Hello world."


async def test_body_equals_every_token_byte_for_byte(harness: Harness) -> None:
    # Grapheme clusters split across tokens: a ZWJ family, a skin tone, a combining accent.
    tokens = [
        "Voilà: ", "👨\u200d👩", "\u200d👧", " 👍", "🏽 ", "cafe", "\u0301", ". ",
        "你好", "，世界", "！", " 𝄞\n", "```py\n", "x = 3.14\n", "```", " done.",
    ] * 5  # fmt: skip
    delivered = []

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        for token in tokens:
            await append(token)

    harness.generate = generate
    stream_id = await harness.new_stream()
    async with harness.client.stream("POST", harness.drive_url(stream_id)) as response:
        delivered = [chunk async for chunk in response.aiter_raw()]
    expected = "".join(tokens)
    assert b"".join(delivered) == expected.encode()
    await harness.wait_finished(stream_id)
    body = await harness.pts.get_stream_body(stream_id)
    assert body.status is StreamStatus.DONE
    assert body.text == expected
    assert body.size == len(expected.encode())


async def test_client_disconnect_does_not_stop_generation(harness: Harness) -> None:
    tokens = [f"Token {i}. " for i in range(40)]

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        for token in tokens:
            await append(token)
            await asyncio.sleep(0.01)

    harness.generate = generate
    stream_id = await harness.new_stream()
    async with harness.client.stream("POST", harness.drive_url(stream_id)) as response:
        first = await anext(response.aiter_raw())
        assert first.startswith(b"Token 0.")
    # The client is gone (the connection is closed); the generation goes on.
    info = await harness.wait_finished(stream_id)
    assert info.status is StreamStatus.DONE
    assert (await harness.pts.get_stream_body(stream_id)).text == "".join(tokens)
    assert harness.calls == 1


async def test_second_driver_gets_409_and_no_second_generation(harness: Harness) -> None:
    gate = asyncio.Event()

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        await append("Only once. ")
        await gate.wait()

    harness.generate = generate
    stream_id = await harness.new_stream()
    async with harness.client.stream("POST", harness.drive_url(stream_id)) as first:
        assert first.status_code == 200
        assert await anext(first.aiter_raw()) == b"Only once. "
        second = await harness.client.post(harness.drive_url(stream_id))
        assert second.status_code == 409
        payload = second.json()
        assert payload["error"] == "already_driven"
        assert payload["status"] == "streaming"
        assert isinstance(payload["size"], int)
        gate.set()
    await harness.wait_finished(stream_id)
    late = await harness.client.post(harness.drive_url(stream_id))
    assert late.status_code == 409
    assert late.json()["status"] == "done"
    assert late.json()["size"] == len(b"Only once. ")
    assert harness.calls == 1


async def test_unknown_stream_is_404(harness: Harness) -> None:
    harness.generate = None
    response = await harness.client.post(harness.drive_url(uuid.uuid4()))
    assert response.status_code == 404
    assert harness.calls == 0


async def test_raising_generator_ends_error_and_keeps_the_text(harness: Harness) -> None:
    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        await append("Partial answer. ")
        await append("Half a sen")
        raise RuntimeError("model exploded")

    harness.generate = generate
    stream_id = await harness.new_stream()
    response = await harness.client.post(harness.drive_url(stream_id))
    assert response.text == "Partial answer. Half a sen"
    info = await harness.wait_finished(stream_id)
    assert info.status is StreamStatus.ERROR
    assert info.error == "model exploded"
    assert (await harness.pts.get_stream_body(stream_id)).text == "Partial answer. Half a sen"


async def test_cancel_from_another_process_ends_the_generation(
    harness: Harness, db_url: str
) -> None:
    cancelled = asyncio.Event()
    harness.generate = endless("word{} ", 0.005, cancelled)
    stream_id = await harness.new_stream()
    # Another "process": its own pool and its own LISTEN connection.
    async with (
        PersistentTextStreaming(dsn=db_url, sweeper=False) as other,
        harness.client.stream("POST", harness.drive_url(stream_id)) as response,
    ):
        chunks = response.aiter_raw()
        first = await anext(chunks)
        info = await other.cancel(stream_id, reason="user pressed stop")
        assert info.status is StreamStatus.ABORTED
        # The heartbeat and sweeper fallbacks are a minute away: only the
        # NOTIFY can stop the generator within this guard.
        await asyncio.wait_for(cancelled.wait(), 5)
        # ...and the driving response ends by itself.
        rest = await asyncio.wait_for(_drain(chunks), 5)
    final = await harness.wait_finished(stream_id)
    assert final.status is StreamStatus.ABORTED
    assert final.abort_reason == "user pressed stop"
    # Nothing had been flushed (no sentence ends, no timer): asked to stop, the
    # driving process stored exactly what its client saw, then ended the stream.
    persisted = (await harness.pts.get_stream_body(stream_id)).text
    assert persisted == (first + rest).decode()
    assert persisted.startswith("word0 ")


async def test_cancel_in_the_driving_process_keeps_the_buffered_text(harness: Harness) -> None:
    sent: list[str] = []

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        for i in range(100_000):
            token = f"w{i} "  # no sentence end: everything sits in the buffer
            sent.append(token)
            await append(token)
            await asyncio.sleep(0.005)

    harness.generate = generate
    stream_id = await harness.new_stream()
    async with harness.client.stream("POST", harness.drive_url(stream_id)) as response:
        chunks = response.aiter_raw()
        first = await anext(chunks)
        cancel = await harness.client.post(f"/streams/{stream_id}/cancel", json={"reason": "stop"})
        assert cancel.status_code == 200
        assert cancel.json()["status"] == "aborted"
        rest = await asyncio.wait_for(_drain(chunks), 5)
    info = await harness.wait_finished(stream_id)
    assert info.status is StreamStatus.ABORTED
    assert info.abort_reason == "stop"
    body = await harness.pts.get_stream_body(stream_id)
    # Everything the generator produced before the cancel is persisted, even
    # the text still in the buffer, and it is exactly what the client got.
    assert body.text == "".join(sent)
    assert (first + rest).decode() == body.text


async def _drain(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


async def test_generate_can_read_the_request_body(harness: Harness) -> None:
    """The driving response listens for the client's disconnect, which would take the
    body's messages: the body is read before the response starts, so ``generate`` can
    still ``await request.json()`` (it hung before)."""

    async def generate(request: Request[Any, Any, Any], _s: uuid.UUID, append: Append) -> None:
        body = await asyncio.wait_for(request.json(), 5)
        await append(f"You said: {body['message']}.")

    harness.generate = generate
    stream_id = await harness.new_stream()
    response = await harness.client.post(
        harness.drive_url(stream_id), json={"message": "héllo" * 2000}
    )
    assert response.status_code == 200
    assert response.text == f"You said: {'héllo' * 2000}."
    done = await harness.wait_finished(stream_id)
    assert done.status is StreamStatus.DONE

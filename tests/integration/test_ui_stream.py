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

from pts import (
    InvalidChunk,
    PersistentTextStreaming,
    PTSPlugin,
    StoreUnavailable,
    StreamStatus,
    StreamTooLarge,
)
from pts.flush import FlushPolicy
from pts.ui import UIWriter
from tests.support.servers import serve_app
from tests.support.sse import Event, EventStreamParser
from tests.support.waiting import until

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
    async def chat(
        request: Request[Any, Any, Any], stream_id: FromPath[uuid.UUID]
    ) -> Response[Any]:
        harness = ref[0]

        async def generate(req: Request[Any, Any, Any], sid: uuid.UUID, ui: UIWriter) -> None:
            harness.calls += 1
            assert harness.generate is not None
            await harness.generate(req, sid, ui)

        return await pts.stream_ui(request, stream_id, generate)

    @get("/chat/{stream_id:uuid}/stream")
    async def resume(
        stream_id: FromPath[uuid.UUID], replay: FromQuery[bool] = False
    ) -> Response[Any]:
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
        self.parser = EventStreamParser()
        self.pieces: AsyncIterator[bytes] | None = None

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [c for c in self.chunks if isinstance(c, dict)]

    @property
    def types(self) -> list[str]:
        return [c["type"] if isinstance(c, dict) else c for c in self.chunks]


async def read_sse(
    response: httpx.Response, read: Read, until: Callable[[Read], bool] | None = None
) -> Read:
    """Parse ``response`` into ``read`` until it ends (or ``until(read)`` holds); called
    again on the same response, it reads on from there."""
    if read.pieces is None:
        read.headers = response.headers
        read.pieces = response.aiter_bytes()
    async for piece in read.pieces:
        for item in read.parser.feed(piece):
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


async def test_every_chunk_reaches_the_driving_client_with_no_database_write_before_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database takes no append until the client has the chunks: delivery never waits."""
    release = asyncio.Event()
    real_append = harness.pts.store.append

    async def held_append(*args: Any, **kwargs: Any) -> int:
        await release.wait()
        return await real_append(*args, **kwargs)

    monkeypatch.setattr(harness.pts.store, "append", held_append)
    gate = asyncio.Event()

    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.text("Hello")
        await ui.write({"type": "data-status", "data": "looking"})
        await gate.wait()
        await ui.text("Bye.")

    harness.generate = generate
    stream_id = await harness.new_stream()
    read = Read()
    async with harness.client.stream("POST", f"/chat/{stream_id}") as response:
        await asyncio.wait_for(read_sse(response, read, lambda r: "data-status" in r.types), 10)
        assert read.types == ["start", "text-start", "text-delta", "text-end", "data-status"]
        assert (await harness.pts.get_stream(stream_id)).size == 0  # nothing stored yet
        release.set()
        gate.set()
        await read_sse(response, read)
    assert read.types[-2:] == ["finish", "[DONE]"]
    assert await harness.wait_finished(stream_id) is StreamStatus.DONE
    assert rebuild(await harness.stored(stream_id)) == rebuild(read.objects)


async def test_the_generation_survives_the_driving_client(harness: Harness) -> None:
    gate = asyncio.Event()

    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.text("First. ")
        await gate.wait()
        for i in range(20):
            await ui.text(f"More {i}. ")
            await asyncio.sleep(0)

    harness.generate = generate
    stream_id = await harness.new_stream()
    read = Read()
    async with harness.client.stream("POST", f"/chat/{stream_id}") as response:
        await read_sse(response, read, lambda r: "text-delta" in r.types)
    # The client went away; the answer goes on to the end, stored.
    await until(lambda: harness.pts.stats().attached_drives == 0, "the drive is detached")
    gate.set()
    assert await harness.wait_finished(stream_id) is StreamStatus.DONE
    stored = await harness.stored(stream_id)
    assert rebuild(stored) == {"text-1": "First. " + "".join(f"More {i}. " for i in range(20))}
    assert [c["type"] for c in stored][-2:] == ["text-end", "finish"]


async def test_deltas_are_stored_merged_about_one_per_sentence(harness: Harness) -> None:
    sentences = 12
    tokens = [
        f"word{s}-{t}" + (". " if t == 24 else " ") for s in range(sentences) for t in range(25)
    ]
    assert len(tokens) == 300

    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        for token in tokens:
            await ui.text(token)
            await asyncio.sleep(0.001)  # paced like a model: the flusher runs between tokens

    harness.generate = generate
    stream_id = await harness.new_stream()
    read = await drive(harness, stream_id)
    assert await harness.wait_finished(stream_id) is StreamStatus.DONE
    stored = await harness.stored(stream_id)
    deltas = [c for c in stored if c["type"] == "text-delta"]
    print(f"persisted text-delta messages for 300 tokens, {sentences} sentences: {len(deltas)}")
    assert len([c for c in read.objects if c["type"] == "text-delta"]) == 300
    assert 1 <= len(deltas) <= 2 * sentences + 2
    assert rebuild(stored) == rebuild(read.objects) == {"text-1": "".join(tokens)}
    assert [c["type"] for c in stored] == [
        "start",
        "text-start",
        *["text-delta"] * len(deltas),
        "text-end",
        "finish",
    ]


async def test_a_resume_mid_answer_replays_from_start_then_continues_exactly_once(
    harness: Harness,
) -> None:
    gate = asyncio.Event()
    tool_call = {
        "type": "tool-input-available",
        "toolCallId": "call-1",
        "toolName": "weather",
        "input": {"city": "Paris"},
    }
    tool_result = {"type": "tool-output-available", "toolCallId": "call-1", "output": {"temp": 21}}

    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.reasoning("I should look it up. ")
        await ui.text("Let me check. ")
        await gate.wait()
        await ui.write({"type": "tool-input-start", "toolCallId": "call-1", "toolName": "weather"})
        await ui.write(tool_call)
        await ui.write(tool_result)
        for i in range(5):
            await ui.text(f"Sentence {i} is here")
            await ui.text(". ")

    harness.generate = generate
    stream_id = await harness.new_stream()
    driving, follower = Read(), Read()

    async def drive_it() -> None:
        async with harness.client.stream("POST", f"/chat/{stream_id}") as response:
            await read_sse(response, driving)

    async def follow() -> None:
        async with harness.client.stream("GET", f"/chat/{stream_id}/stream") as response:
            assert response.status_code == 200
            await read_sse(response, follower)

    driver = asyncio.create_task(drive_it())
    await until(lambda: "text-delta" in driving.types, "the driving read has text")
    reader = asyncio.create_task(follow())
    await until(lambda: "text-delta" in follower.types, "the resumed read replayed the text")
    gate.set()
    await asyncio.wait_for(asyncio.gather(driver, reader), 20)

    assert follower.types[0] == "start"
    assert follower.chunks[0] == driving.chunks[0]
    assert rebuild(follower.objects) == rebuild(driving.objects)
    # The tool call closed the first text part; the text after it is a part of its own.
    assert rebuild(driving.objects) == {
        "reasoning-1": "I should look it up. ",
        "text-2": "Let me check. ",
        "text-3": "".join(f"Sentence {i} is here. " for i in range(5)),
    }
    boundaries = [c for c in driving.objects if "delta" not in c]
    assert [c for c in follower.objects if "delta" not in c] == boundaries
    for read in (driving, follower):
        assert read.types[-2:] == ["finish", "[DONE]"]
        assert read.types.count("finish") == 1
        tools = [c for c in read.objects if c["type"].startswith("tool-")]
        assert tools[1:] == [tool_call, tool_result]
    assert harness.calls == 1


async def test_resume_of_a_finished_stream_or_none_is_204_and_replay_finished_replays(
    harness: Harness,
) -> None:
    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.write({"type": "start", "messageMetadata": {"model": "m1"}})
        await ui.text("Short answer.")

    harness.generate = generate
    stream_id = await harness.new_stream()
    driving = await drive(harness, stream_id)
    assert driving.chunks[0] == {
        "type": "start",
        "messageMetadata": {"model": "m1"},
        "messageId": str(stream_id),
    }
    await harness.wait_finished(stream_id)
    for url in (f"/chat/{stream_id}/stream", "/chat/none/stream"):
        response = await harness.client.get(url)
        assert response.status_code == 204
        assert response.content == b""
    replayed = await resume(harness, stream_id, "?replay=true")
    assert_headers(replayed)
    assert rebuild(replayed.objects) == rebuild(driving.objects)
    assert replayed.types == ["start", "text-start", "text-delta", "text-end", "finish", "[DONE]"]


async def test_resume_of_an_unknown_stream_is_404_json(harness: Harness) -> None:
    response = await harness.client.get(f"/chat/{uuid.uuid4()}/stream")
    assert response.status_code == 404
    assert response.json()["error"] == "stream_not_found"


async def test_stream_ui_on_a_text_stream_is_409_and_claims_nothing(harness: Harness) -> None:
    harness.generate = _never_called
    stream_id = await harness.pts.create_stream()  # text/plain
    response = await harness.client.post(f"/chat/{stream_id}")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "not_a_ui_stream"
    assert "application/json" in body["detail"]
    assert (await harness.pts.get_stream(stream_id)).status is StreamStatus.PENDING
    response = await harness.client.get(f"/chat/{stream_id}/stream")
    assert response.status_code == 409
    assert response.json()["error"] == "not_a_ui_stream"
    assert harness.calls == 0


async def _never_called(_r: object, _s: uuid.UUID, _ui: UIWriter) -> None:
    raise AssertionError("generate must not run")


async def test_a_second_driver_gets_409_already_driven(harness: Harness) -> None:
    gate = asyncio.Event()

    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.text("Hi. ")
        await gate.wait()

    harness.generate = generate
    stream_id = await harness.new_stream()
    first = Read()

    async def drive_it() -> None:
        async with harness.client.stream("POST", f"/chat/{stream_id}") as response:
            await read_sse(response, first)

    task = asyncio.create_task(drive_it())
    await until(lambda: "text-delta" in first.types, "the first driver streams")
    second = await harness.client.post(f"/chat/{stream_id}")
    assert second.status_code == 409
    assert second.json()["error"] == "already_driven"
    gate.set()
    await asyncio.wait_for(task, 20)
    assert first.types[-2:] == ["finish", "[DONE]"]
    assert harness.calls == 1


# -- bad chunks, cancel ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk", "says"),
    [
        pytest.param(["text-delta"], "JSON object", id="not-an-object"),
        pytest.param(
            {"type": "tool-call", "toolCallId": "c"},
            "not a UI message chunk type",
            id="unknown-type",
        ),
        pytest.param(
            {"type": "tool-input-available", "toolCallId": "c"}, "'toolName'", id="missing-field"
        ),
        pytest.param({"type": "error"}, "'errorText'", id="error-without-text"),
        pytest.param({"type": "data-x", "data": {1, 2}}, "standard JSON", id="not-json"),
        pytest.param({"type": "data-x", "data": float("nan")}, "standard JSON", id="nan"),
        pytest.param({"type": "data-x", "data": {1: "a"}}, "not a string", id="int-key"),
        pytest.param(
            {"type": "text-delta", "id": "nope", "delta": "x"}, "not an open", id="delta-of-no-part"
        ),
    ],
)
async def test_a_bad_chunk_is_a_typed_error_and_the_stream_ends_with_error(
    harness: Harness, chunk: object, says: str
) -> None:
    caught: list[Exception] = []

    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.text("Before. ")
        try:
            await ui.write(chunk)  # type: ignore[arg-type]
        except InvalidChunk as exc:
            caught.append(exc)
            raise

    harness.generate = generate
    stream_id = await harness.new_stream()
    read = await drive(harness, stream_id)
    assert len(caught) == 1
    assert says in str(caught[0])
    assert read.types == ["start", "text-start", "text-delta", "text-end", "error", "[DONE]"]
    assert read.objects[-1]["errorText"] == str(caught[0])
    assert await harness.wait_finished(stream_id) is StreamStatus.ERROR
    stored = await harness.stored(stream_id)
    assert stored == [c for c in read.objects]  # nothing of the bad chunk, nothing corrupted
    replayed = await resume(harness, stream_id, "?replay=true")
    assert replayed.chunks == read.chunks


async def test_a_generate_that_raises_ends_with_error_once_on_every_read(harness: Harness) -> None:
    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.text("Partial")
        raise RuntimeError("the model went away")

    harness.generate = generate
    stream_id = await harness.new_stream()
    read = await drive(harness, stream_id)
    assert read.chunks[-2:] == [{"type": "error", "errorText": "the model went away"}, "[DONE]"]
    assert await harness.wait_finished(stream_id) is StreamStatus.ERROR
    replayed = await resume(harness, stream_id, "?replay=true")
    assert replayed.chunks == read.chunks


async def _endless(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
    await ui.reasoning("Thinking. ")
    for i in range(100_000):
        await ui.text(f"Token {i}. ")
        await asyncio.sleep(0.005)


async def test_cancel_ends_the_driving_read_and_a_follower_with_one_abort(
    harness: Harness,
) -> None:
    harness.generate = _endless
    stream_id = await harness.new_stream()
    driving, follower = Read(), Read()

    async def drive_it() -> None:
        async with harness.client.stream("POST", f"/chat/{stream_id}") as response:
            await read_sse(response, driving)

    async def follow() -> None:
        async with harness.client.stream("GET", f"/chat/{stream_id}/stream") as response:
            await read_sse(response, follower)

    tasks = [asyncio.create_task(drive_it()), asyncio.create_task(follow())]
    await until(lambda: driving.types.count("text-delta") >= 3, "the answer streams")
    await until(lambda: "text-delta" in follower.types, "the follower reads it live")
    stopped = await harness.client.post(f"/chat/{stream_id}/stop")
    assert stopped.json() == {"status": "aborted"}
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    for read in (driving, follower):
        assert read.types[-2:] == ["abort", "[DONE]"]
        assert read.types.count("abort") == 1
        assert "finish" not in read.types
    # The partial message is kept: the follower has every token the driver saw.
    assert rebuild(follower.objects) == rebuild(driving.objects)
    assert (await harness.pts.get_stream(stream_id)).status is StreamStatus.ABORTED
    stored = await harness.stored(stream_id)
    assert [c["type"] for c in stored].count("abort") == 1


async def test_another_process_resumes_and_cancels_and_every_reader_gets_one_abort(
    harness: Harness, db_url: str
) -> None:
    """Process 2 (its own component and server on the same database) resumes the answer
    process 1 drives, then cancels it: process 1 is asked through NOTIFY and stops as a
    cancel of its own would, storing its buffered text and the abort, so every reader
    (the driving one, process 2's, a replay) gets the same message and one abort."""
    harness.generate = _endless
    other = PersistentTextStreaming(dsn=db_url, stale_after=120, sweep_interval=60)
    async with (
        serve_app(make_app(other, [harness])) as other_url,
        httpx.AsyncClient(base_url=other_url, timeout=20) as client2,
    ):
        stream_id = await harness.new_stream()
        driving, follower = Read(), Read()

        async def drive_it() -> None:
            async with harness.client.stream("POST", f"/chat/{stream_id}") as response:
                await read_sse(response, driving)

        async def follow() -> None:
            async with client2.stream("GET", f"/chat/{stream_id}/stream") as response:
                assert response.status_code == 200
                await read_sse(response, follower)

        tasks = [asyncio.create_task(drive_it()), asyncio.create_task(follow())]
        await until(lambda: "text-delta" in follower.types, "process 2 reads it live")
        stopped = await client2.post(f"/chat/{stream_id}/stop")
        assert stopped.json() == {"status": "aborted"}
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        replayed = Read()
        async with client2.stream("GET", f"/chat/{stream_id}/stream?replay=true") as r:
            await read_sse(r, replayed)
    for read in (driving, follower, replayed):
        assert read.types.count("abort") == 1
        assert read.types[-2:] == ["abort", "[DONE]"]
        assert read.types[0] == "start"
    assert [c["type"] for c in await harness.stored(stream_id)].count("abort") == 1
    assert replayed.chunks == follower.chunks
    assert rebuild(follower.objects) == rebuild(driving.objects)
    assert harness.calls == 1


async def test_an_outage_past_the_limit_ends_the_driving_read_with_error_not_a_cut(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pts = PersistentTextStreaming(dsn=db_url, outage_limit=0.2, stale_after=120)
    ref: list[Harness] = []
    async with serve_app(make_app(pts, ref)) as base_url:
        harness = Harness(pts, base_url)
        ref.append(harness)
        harness.generate = _endless
        stream_id = await harness.new_stream()

        async def unreachable(*_a: object, **_k: object) -> int:
            raise StoreUnavailable("the database is down (a test)")

        monkeypatch.setattr(pts.store, "append", unreachable)
        try:
            read = await drive(harness, stream_id)
        finally:
            await harness.client.aclose()
        assert read.types[-2:] == ["error", "[DONE]"]
        assert "unreachable" in read.objects[-1]["errorText"]
        assert await harness.wait_finished(stream_id) is StreamStatus.ERROR
        monkeypatch.undo()
        async with httpx.AsyncClient(base_url=base_url) as client:
            replayed = Read()
            async with client.stream("GET", f"/chat/{stream_id}/stream?replay=true") as r:
                await read_sse(r, replayed)
        # Nothing was stored; the reader is told how it ended all the same.
        assert replayed.chunks[0] == {"type": "start", "messageId": str(stream_id)}
        assert replayed.types == ["start", "error", "[DONE]"]


async def test_a_stream_past_its_size_cap_ends_with_error_and_stays_readable(
    db_url: str,
) -> None:
    pts = PersistentTextStreaming(dsn=db_url, max_stream_size=2000, stale_after=120)
    ref: list[Harness] = []
    raised: list[Exception] = []

    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        try:
            for i in range(1000):
                await ui.text(f"Sentence number {i}. ")
        except StreamTooLarge as exc:
            raised.append(exc)
            raise

    async with serve_app(make_app(pts, ref)) as base_url:
        harness = Harness(pts, base_url)
        ref.append(harness)
        harness.generate = generate
        try:
            stream_id = await harness.new_stream()
            read = await drive(harness, stream_id)
            assert len(raised) == 1
            assert read.types[-2:] == ["error", "[DONE]"]
            assert read.objects[-1]["errorText"] == str(raised[0])
            assert await harness.wait_finished(stream_id) is StreamStatus.ERROR
            info = await pts.get_stream(stream_id)
            assert info.size <= 2000
            replayed = await resume(harness, stream_id, "?replay=true")
            assert replayed.types.count("error") == 1
            assert replayed.types[-2:] == ["error", "[DONE]"]
            assert replayed.chunks[0] == read.chunks[0]
            # The stored text is a prefix of what the driving client saw.
            stored_text = "".join(rebuild(replayed.objects).values())
            assert "".join(rebuild(read.objects).values()).startswith(stored_text)
        finally:
            await harness.client.aclose()


# -- the same stream, read by the other readers ------------------------------------------------


async def test_the_stream_reads_as_json_messages_through_durable_streams_and_subscribe(
    harness: Harness,
) -> None:
    async def generate(_r: object, _s: uuid.UUID, ui: UIWriter) -> None:
        await ui.text("One. Two. ")
        await ui.write({"type": "data-x", "data": [1, "é"]})

    harness.generate = generate
    stream_id = await harness.new_stream()
    read = await drive(harness, stream_id)
    await harness.wait_finished(stream_id)
    stored = await harness.stored(stream_id)
    response = await harness.client.get(f"/v1/stream/pts/{stream_id}", params={"offset": "-1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == stored
    assert rebuild(stored) == rebuild(read.objects)
    text = "".join([t async for t in harness.pts.read_stream(stream_id)])
    assert json.loads("[" + text[:-1] + "]") == stored

"""pts.testing.MemoryStore: an app and its routes run with no database at all.

The store contract (tests/test_store_contract.py) runs on it as ``[memory]``;
these tests cover what only it has: in-process notifications, its clock, its
refusal of the Durable Streams operations, and a whole Litestar app on it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg
import httpx
import psycopg
import pytest
from litestar import Litestar, Request, post
from litestar.params import FromPath
from litestar.response import Stream
from litestar.testing import AsyncTestClient

import pts.database
import pts.live.feed
import pts.opening
from pts import Append, PersistentTextStreaming, PTSPlugin, StreamStatus
from pts.errors import ConfigurationError
from pts.live.notification import Notification
from pts.plugin import allow_everything
from pts.store import Store
from pts.testing import DurableStreamsNotSupported, MemoryStore
from tests.support.sse import collect

S = StreamStatus
AnyRequest: TypeAlias = Request[Any, Any, Any]
TOKENS = ["Hello, wêreld 🌍. ", "No Postgres", " here", " at all."]
TEXT = "".join(TOKENS)


@pytest.fixture
def no_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    """No database URL can be resolved, and any attempt to reach Postgres fails the test."""

    def refuse(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("Postgres was touched")

    for name in ("PTS_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pts.opening, "resolve_dsn", refuse)
    monkeypatch.setattr(pts.opening, "create_store", refuse)
    monkeypatch.setattr(pts.live.feed, "Listener", refuse)
    monkeypatch.setattr(pts.database, "start_embedded", refuse)
    monkeypatch.setattr(asyncpg, "connect", refuse)
    monkeypatch.setattr(asyncpg, "create_pool", refuse)
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refuse)


def chat_app(component: PersistentTextStreaming, release: asyncio.Event | None = None) -> Litestar:
    """An app's own driving route, as in the README, and pts's routes."""

    @post("/chat/{stream_id:uuid}/stream")
    async def chat_stream(request: AnyRequest, stream_id: FromPath[uuid.UUID]) -> Stream:
        async def generate(_request: AnyRequest, _stream_id: uuid.UUID, append: Append) -> None:
            await append(TOKENS[0])
            if release is not None:
                await release.wait()  # the rest only once the subscriber has the start
            for token in TOKENS[1:]:
                await append(token)

        return await component.stream(request, stream_id, generate)

    return Litestar([chat_stream], plugins=[PTSPlugin(component, authorize=allow_everything)])


async def test_a_litestar_app_runs_on_the_memory_store_without_a_database(
    no_postgres: None,
) -> None:
    # Litestar's test client runs the app (and its lifespan: the plugin opens
    # the component) in a thread of its own, one request at a time.
    store = MemoryStore()
    async with AsyncTestClient(chat_app(PersistentTextStreaming(store=store))) as client:
        created = await client.post("/streams")
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
        driven = await client.post(f"/chat/{stream_id}/stream")
        assert driven.status_code == 200
        assert driven.text == TEXT
        events = await collect(client, f"/streams/{stream_id}/events")
        view = await client.get(f"/streams/{stream_id}")
    assert "".join(e.data for e in events if e.event == "text") == TEXT
    assert events[-1].event == "status"
    assert '"done"' in events[-1].data
    assert (view.json()["text"], view.json()["status"]) == (TEXT, "done")
    info = await store.get_stream(uuid.UUID(stream_id))
    assert (info.status, info.size) == (S.DONE, len(TEXT.encode()))


async def test_a_live_subscriber_gets_the_whole_text_without_a_database(
    no_postgres: None,
) -> None:
    # In process on this event loop, so that the subscriber reads while the
    # generation runs: it gets the first sentence (persisted at its boundary,
    # announced by the store), then the generation goes on.
    release = asyncio.Event()
    store = MemoryStore()
    component = PersistentTextStreaming(store=store)
    app = chat_app(component, release)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with component, httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        created = await client.post("/streams")
        stream_id = uuid.UUID(created.json()["id"])
        driving = asyncio.create_task(client.post(f"/chat/{stream_id}/stream"))
        pieces: list[str] = []
        async with asyncio.timeout(30):
            async for text in component.read_stream(stream_id=stream_id):
                pieces.append(text)
                release.set()
            response = await driving
    assert pieces[0] == TOKENS[0]
    assert len(pieces) > 1
    assert "".join(pieces) == TEXT
    assert response.text == TEXT
    assert (await store.get_stream(stream_id)).status is S.DONE


async def test_a_component_reopened_on_the_same_store_finds_its_streams(
    no_postgres: None,
) -> None:
    store = MemoryStore()
    async with PersistentTextStreaming(store=store) as first:
        stream_id = await first.create_stream(client_id="kept")
    async with PersistentTextStreaming(store=store) as second:
        assert (await second.get_stream(stream_id)).client_id == "kept"


async def test_notifications_on_append_and_status_but_not_heartbeat() -> None:
    # The same sequence as the database's trigger, in the contract suite.
    store = MemoryStore()
    received: asyncio.Queue[Notification] = asyncio.Queue()
    store.listen(received.put_nowait)
    info = await store.create_stream()
    assert await asyncio.wait_for(received.get(), 5) == Notification(info.id, 0, "pending", False)
    await store.claim(info.id)
    assert (await asyncio.wait_for(received.get(), 5)).status == "streaming"
    await store.heartbeat([info.id])
    await store.append(info.id, "né".encode(), offset=0)
    assert await asyncio.wait_for(received.get(), 5) == Notification(info.id, 3, "streaming", False)
    await store.append(info.id, b"", offset=3, finish=S.DONE)
    assert await asyncio.wait_for(received.get(), 5) == Notification(info.id, 3, "done", True)
    await store.delete_stream(info.id)
    assert await asyncio.wait_for(received.get(), 5) == Notification(info.id, 3, "deleted", True)
    assert received.empty()


async def test_a_handler_that_raises_does_not_stop_the_others() -> None:
    store = MemoryStore()
    received: asyncio.Queue[Notification] = asyncio.Queue()

    def broken(_note: Notification) -> None:
        raise RuntimeError("boom")

    store.listen(broken)
    remove = store.listen(received.put_nowait)
    info = await store.create_stream()
    assert (await asyncio.wait_for(received.get(), 5)).stream_id == info.id
    remove()
    await store.claim(info.id)
    await asyncio.sleep(0)  # a delivery is one loop turn away; none may come now
    assert received.empty()


class Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def test_stale_and_pending_sweeps_follow_the_clock() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    dead = await store.create_stream(status=S.STREAMING)
    healthy = await store.create_stream(status=S.STREAMING)
    waiting = await store.create_stream()
    clock.advance(45)
    await store.heartbeat([healthy.id])
    assert [s.id for s in await store.find_stale(30)] == [dead.id]
    assert [s.id for s in await store.timeout_stale(30)] == [dead.id]
    after = await store.get_stream(dead.id)
    assert (after.status, after.closed) == (S.TIMEOUT, True)
    assert after.error
    assert (await store.get_stream(healthy.id)).status is S.STREAMING
    assert await store.timeout_pending(60) == []
    assert [s.id for s in await store.timeout_pending(30)] == [waiting.id]


async def test_times_always_advance_even_on_a_frozen_clock() -> None:
    store = MemoryStore(clock=Clock())
    live = await store.create_stream(status=S.STREAMING)
    await store.heartbeat([live.id])
    after = await store.get_stream(live.id)
    assert live.heartbeat_at is not None
    assert after.heartbeat_at is not None
    assert after.heartbeat_at > live.heartbeat_at


async def test_the_durable_streams_operations_are_refused_plainly() -> None:
    store = MemoryStore()
    calls = [
        store.ds_lookup("p"),
        store.ds_create("p", content_type="text/plain"),
        store.ds_append("p", b"x", media_type="text/plain"),
    ]
    for call in calls:
        with pytest.raises(DurableStreamsNotSupported, match="does not serve the Durable"):
            await call
    assert issubclass(DurableStreamsNotSupported, ConfigurationError)
    assert issubclass(DurableStreamsNotSupported, NotImplementedError)


def test_a_database_store_needs_its_dsn() -> None:
    from pts.store import create_store

    with pytest.raises(ConfigurationError, match="dsn="):
        PersistentTextStreaming(store=create_store("postgresql://nowhere/db"))


def test_the_memory_store_implements_every_store_operation() -> None:
    # Store's operations are abstract: a Store that lacks one cannot even be made.
    assert Store in MemoryStore.__mro__
    assert MemoryStore.__abstractmethods__ == frozenset()

    class Forgetful(Store):
        async def open(self) -> None: ...

    with pytest.raises(TypeError, match=r"abstract method.*claim"):
        Forgetful()  # type: ignore[abstract]

"""Memory on the read side is bounded in bytes: subscriber buffers, and every read is a page.

A stalled subscriber holds at most its buffer (``subscriber_buffer_bytes``)
and then gets every byte exactly once; catch-ups, re-reads and the pts routes
read a long stream in pages of ``read_page_bytes`` (counted with a spy on the
store's ``read``), and ``GET /streams/{id}`` is still byte for byte the JSON
document it was.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import h11
import httpx
import pytest
from litestar import Litestar
from litestar.serialization import encode_json

from pts.body import json_with_text, read_body
from pts.core import PersistentTextStreaming
from pts.live.hub import READ_PAGE_BYTES, SUBSCRIBER_BUFFER_BYTES
from pts.live.subscribe import Update
from pts.models import ReadResult, StreamBody, StreamStatus
from pts.plugin import PTSPlugin, StreamView, allow_everything
from pts.store import Store
from tests.support.servers import HOST, serve_app
from tests.support.sse import Event, collect, parse_events

MiB = 1 << 20
# Characters of 1 to 4 bytes, JSON escapes (quote, backslash, control, newline).
ALPHABET = 'aé€𝄞"\\\x01\n z'


def text_of_size(size: int, seed: int = 7) -> bytes:
    """About ``size`` bytes of UTF-8 text mixing 1- to 4-byte characters."""
    rng = random.Random(seed)
    chars = rng.choices(ALPHABET, k=size // 2)
    return "".join(chars).encode()[:size].decode("utf-8", errors="ignore").encode()


class ReadSpy:
    """Records the ``(offset, max_bytes)`` of every ``store.read`` (tails' and readers')."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
        self.calls: list[tuple[int, int | None]] = []
        self.by_tails = 0  # of those, reads by a stream's tail (its task's name says so)
        original: Callable[..., Awaitable[ReadResult]] = store.read

        async def read(
            stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
        ) -> ReadResult:
            self.calls.append((offset, max_bytes))
            task = asyncio.current_task()
            self.by_tails += task is not None and task.get_name().startswith("pts-tail-")
            return await original(stream_id, offset, max_bytes)

        monkeypatch.setattr(store, "read", read)

    def assert_paged(self, page: int) -> None:
        assert self.calls, "no reads"
        unbounded = [c for c in self.calls if c[1] is None or c[1] > page]
        assert not unbounded, f"reads beyond a page of {page}: {unbounded[:5]}"


async def fill(
    store: Store,
    data: bytes,
    piece: int,
    *,
    stream_id: uuid.UUID | None = None,
    finish: StreamStatus | None = StreamStatus.DONE,
) -> uuid.UUID:
    """Append ``data`` in pieces of ``piece`` bytes (cutting characters), then finish."""
    if stream_id is None:
        stream_id = (await store.create_stream(status=StreamStatus.STREAMING)).id
    size = (await store.get_stream(stream_id)).size
    for start in range(0, len(data), piece):
        size = await store.append(stream_id, data[start : start + piece], offset=size)
    if finish is not None:
        await store.append(stream_id, b"", offset=size, finish=finish)
    return stream_id


def buffered(pts: PersistentTextStreaming, stream_id: uuid.UUID) -> tuple[int, ...]:
    """The bytes each subscriber of the stream holds here (pts.live_stream, the public view)."""
    view = pts.live_stream(stream_id)
    return () if view is None else view.buffered_bytes


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a hang guard, not a timing assertion)."""
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


def tail_at(pts: PersistentTextStreaming, stream_id: uuid.UUID, size: int) -> Callable[[], bool]:
    """The stream's tail in this process has read and handed out every byte up to ``size``."""

    def check() -> bool:
        view = pts.live_stream(stream_id)
        return view is not None and view.offset == size

    return check


def assert_contiguous(updates: list[Update], start: int, end: int) -> None:
    """Every byte from ``start`` to ``end`` exactly once, in order."""
    position = start
    for update in updates:
        assert update.offset == position, (update.offset, position)
        position = update.end
    assert position == end


# -- the hub: a stalled subscriber, paged catch-up --------------------------------------


async def test_a_stalled_subscriber_buffers_at_most_its_bytes_then_gets_everything(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = text_of_size(8 * MiB)
    async with PersistentTextStreaming(dsn=db_url, sweeper=False) as pts:
        stream_id = (await pts.store.create_stream(status=StreamStatus.STREAMING)).id
        stalled = pts.subscribe(stream_id)
        first = await anext(stalled)  # subscribed; then it takes nothing for a while
        spy = ReadSpy(monkeypatch, pts.store)
        await fill(pts.store, data, 64 * 1024, stream_id=stream_id)
        await until(tail_at(pts, stream_id, len(data)), "the tail read everything")
        # 128 appends of 64 KiB (fewer than the 256 updates a buffer may count) went
        # by; the stalled subscriber holds at most its bound in bytes, and nothing was
        # read for it (only the tail read, once for everyone).
        assert max(buffered(pts, stream_id)) <= SUBSCRIBER_BUFFER_BYTES
        assert spy.by_tails == len(spy.calls)
        rest = [u async for u in stalled]
    assert (first.text + "".join(u.text for u in rest)).encode() == data
    assert_contiguous([first, *rest], 0, len(data))
    assert rest[-1].finished
    assert rest[-1].status is StreamStatus.DONE
    spy.assert_paged(READ_PAGE_BYTES)


async def test_a_subscription_reads_a_long_backlog_in_pages(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = text_of_size(3 * MiB + 12345)
    async with PersistentTextStreaming(dsn=db_url, sweeper=False) as pts:
        stream_id = await fill(pts.store, data, 100_003)
        spy = ReadSpy(monkeypatch, pts.store)
        updates = [u async for u in pts.subscribe(stream_id)]
    spy.assert_paged(READ_PAGE_BYTES)
    assert len(spy.calls) >= math.ceil(len(data) / READ_PAGE_BYTES)
    assert "".join(u.text for u in updates).encode() == data
    assert_contiguous(updates, 0, len(data))
    # Only the last page says the stream is finished.
    assert [u.finished for u in updates] == [False] * (len(updates) - 1) + [True]


async def test_small_pages_cut_characters_and_resume_exactly(db_url: str) -> None:
    data = text_of_size(5000, seed=3)
    async with PersistentTextStreaming(
        dsn=db_url, sweeper=False, read_page_bytes=50, subscriber_buffer_bytes=64
    ) as pts:
        stream_id = await fill(pts.store, data, 7)
        updates = [u async for u in pts.subscribe(stream_id)]
        assert len(updates) >= len(data) // 57
        assert "".join(u.text for u in updates).encode() == data
        assert_contiguous(updates, 0, len(data))
        # Every end is a character boundary to resume from.
        middle = updates[len(updates) // 2].end
        resumed = [u async for u in pts.subscribe(stream_id, middle)]
        assert "".join(u.text for u in resumed).encode() == data[middle:]


async def test_a_stalled_subscriber_under_small_bounds(db_url: str) -> None:
    """With a tiny buffer and page, an overflowing reader still gets each byte once."""
    data = text_of_size(200_000, seed=5)
    async with PersistentTextStreaming(
        dsn=db_url, sweeper=False, read_page_bytes=1000, subscriber_buffer_bytes=3000
    ) as pts:
        stream_id = (await pts.store.create_stream(status=StreamStatus.STREAMING)).id
        stalled = pts.subscribe(stream_id)
        first = await anext(stalled)
        await fill(pts.store, data, 997, stream_id=stream_id)
        await until(tail_at(pts, stream_id, len(data)), "the tail read everything")
        assert max(buffered(pts, stream_id)) <= 3000
        rest = [u async for u in stalled]
    assert (first.text + "".join(u.text for u in rest)).encode() == data
    assert_contiguous([first, *rest], 0, len(data))


def test_the_bounds_must_be_positive() -> None:
    for bad in ({"subscriber_buffer_bytes": 0}, {"read_page_bytes": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            PersistentTextStreaming(dsn="postgresql://unused", **bad)  # type: ignore[arg-type]


# -- a body in pages -----------------------------------------------------------------


FRAGMENTS = [b"a", b"\xff", b"\xe2\x82", b"\xf0\x9d\x84\x9e", "é".encode(), b"\xed\xa0\x80"]


async def test_a_paged_body_decodes_as_the_whole_would(store: Store) -> None:
    """Valid or not, bytes decode across page boundaries as they do at once."""
    rng = random.Random(11)
    data = b"".join(rng.choices([*FRAGMENTS, b"\xc0\xaf", b"\n"], k=3000))
    stream_id = await fill(store, data, 5)
    for page in (1, 2, 3, 7, 64, 1000, len(data)):
        body = await read_body(store, await store.get_stream(stream_id), page)
        text = body.whole
        if text is None:
            text = "".join([piece async for piece in body.texts()])
        assert text == data.decode("utf-8", errors="replace"), page
        assert body.stream.size == len(data)


async def test_json_with_text_is_the_document_encode_json_writes() -> None:
    async def pieces(parts: list[str]) -> AsyncIterator[str]:
        for part in parts:
            yield part

    whole = 'x"\\\x01\n€𝄞' * 10
    parts = [whole[i : i + 3] for i in range(0, len(whole), 3)]
    envelope = {"id": 1, "text": "", "reason": '"text":""'}
    written = b"".join([b async for b in json_with_text(envelope, "text", pieces(parts))])
    assert written == encode_json({**envelope, "text": whole})


# -- the pts routes ------------------------------------------------------------------


def make_app(pts: PersistentTextStreaming) -> Litestar:
    return Litestar(plugins=[PTSPlugin(pts, authorize=allow_everything)])


async def expected_view(pts: PersistentTextStreaming, stream_id: uuid.UUID) -> bytes:
    """The JSON of GET /streams/{id}, computed from the whole text at once."""
    info = await pts.store.get_stream(stream_id)
    read = await pts.store.read(stream_id)
    text = read.data.decode("utf-8", errors="replace")
    return encode_json(StreamView.from_body(StreamBody(stream=info, text=text)))


async def test_get_stream_reads_in_pages_and_is_the_same_document(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = text_of_size(3 * MiB + 54321)
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False)
    async with serve_app(make_app(pts)) as url, httpx.AsyncClient(base_url=url) as client:
        stream_id = await fill(pts.store, data, 100_003)
        expected = await expected_view(pts, stream_id)
        spy = ReadSpy(monkeypatch, pts.store)
        response = await client.get(f"/streams/{stream_id}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == expected
        assert response.json()["text"].encode() == data
        spy.assert_paged(READ_PAGE_BYTES)
        assert len(spy.calls) >= math.ceil(len(data) / READ_PAGE_BYTES)


async def test_get_stream_with_pages_that_cut_characters(db_url: str) -> None:
    data = text_of_size(6000, seed=9)
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False, read_page_bytes=50)
    async with serve_app(make_app(pts)) as url, httpx.AsyncClient(base_url=url) as client:
        for status in (StreamStatus.DONE, None):  # finished, and still streaming
            stream_id = await fill(pts.store, data, 7, finish=status)
            response = await client.get(f"/streams/{stream_id}")
            assert response.status_code == 200
            assert response.content == await expected_view(pts, stream_id)
        # Small streams: an ordinary response, as before.
        small = await fill(pts.store, "héllo 𝄞".encode(), 3)
        response = await client.get(f"/streams/{small}")
        assert response.content == await expected_view(pts, small)
        assert response.headers["content-length"] == str(len(response.content))
        # Cancel answers the same view.
        pending = await fill(pts.store, data, 7, finish=None)
        cancelled = await client.post(f"/streams/{pending}/cancel", json={"reason": "stop"})
        assert cancelled.status_code == 200
        assert cancelled.content == await expected_view(pts, pending)
        assert cancelled.json()["status"] == "aborted"


async def test_sse_catch_up_reads_in_pages(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = text_of_size(3 * MiB + 999)
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False)
    async with serve_app(make_app(pts)) as url, httpx.AsyncClient(base_url=url) as client:
        stream_id = await fill(pts.store, data, 100_003)
        spy = ReadSpy(monkeypatch, pts.store)
        events = await asyncio.wait_for(collect(client, f"/streams/{stream_id}/events"), 30)
    spy.assert_paged(READ_PAGE_BYTES)
    assert len(spy.calls) >= math.ceil(len(data) / READ_PAGE_BYTES)
    texts = [e for e in events if e.event == "text"]
    assert len(texts) > 1
    assert "".join(e.data for e in texts) == data.decode()
    assert texts[-1].id == str(len(data))
    # One status event, the final one (an earlier page must not say "done").
    statuses = [json.loads(e.data) for e in events if e.event == "status"]
    assert statuses == [{"status": "done", "size": len(data), "abort_reason": None, "error": None}]


# -- stalled clients over real sockets -----------------------------------------------


class StalledClient:
    """An HTTP/1.1 client that sends a request and then does not read its socket."""

    def __init__(self, url: str, path: str) -> None:
        self.url, self.path = url, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window, so the server's sends soon wait (backpressure).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        self.writer.write(request.encode())
        await self.writer.drain()

    async def body(self) -> bytes:
        """Read the whole response now, until the server closes; its body."""
        assert self.reader is not None
        assert self.writer is not None
        conn = h11.Connection(our_role=h11.CLIENT)
        conn.send(h11.Request(method="GET", target=self.path, headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        body = bytearray()
        async with asyncio.timeout(60):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await self.reader.read(1 << 16))
                elif isinstance(event, h11.Response):
                    assert event.status_code == 200, event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        self.writer.close()
        return bytes(body)


async def stall_and_check(
    pts: PersistentTextStreaming, url: str, path: str, stream_id: uuid.UUID
) -> list[Event]:
    """A stalled reader while 12 MiB go by holds at most its bound; then reads it all."""
    data = text_of_size(12 * MiB, seed=1)
    client = StalledClient(url, path)
    await client.start()
    await until(lambda: len(buffered(pts, stream_id)) == 1, "subscribed")
    await fill(pts.store, data, 64 * 1024, stream_id=stream_id)
    await until(tail_at(pts, stream_id, len(data)), "the tail read everything")
    # The socket holds a few MiB; the rest went by this subscriber's bounded buffer.
    assert max(buffered(pts, stream_id)) <= SUBSCRIBER_BUFFER_BYTES
    events = parse_events(await client.body())
    assert events
    return events


async def test_a_stalled_sse_reader_holds_at_most_its_bound(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False)
    async with serve_app(make_app(pts)) as url:
        stream_id = (await pts.store.create_stream(status=StreamStatus.STREAMING)).id
        events = await stall_and_check(pts, url, f"/streams/{stream_id}/events", stream_id)
    data = text_of_size(12 * MiB, seed=1)
    texts = [e for e in events if e.event == "text"]
    assert "".join(e.data for e in texts) == data.decode()
    assert texts[-1].id == str(len(data))
    assert json.loads([e for e in events if e.event == "status"][-1].data)["status"] == "done"


async def test_a_stalled_protocol_sse_reader_holds_at_most_its_bound(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False)
    async with serve_app(make_app(pts)) as url, httpx.AsyncClient(base_url=url) as client:
        created = await client.put("/v1/stream/stalled", headers={"content-type": "text/plain"})
        assert created.status_code == 201
        stream_id = (await pts.store.get_stream_by_path("stalled")).id
        events = await stall_and_check(pts, url, "/v1/stream/stalled?offset=-1&live=sse", stream_id)
    data = text_of_size(12 * MiB, seed=1)
    assert "".join(e.data for e in events if e.event == "data") == data.decode()
    control = json.loads([e for e in events if e.event == "control"][-1].data)
    assert control.get("streamClosed") is True


async def test_a_stream_deleted_while_its_pages_are_sent_breaks_the_response(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a well-formed but truncated document: the connection ends early instead."""
    data = text_of_size(2000, seed=4)
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False, read_page_bytes=100)
    async with serve_app(make_app(pts)) as url, httpx.AsyncClient(base_url=url) as client:
        stream_id = await fill(pts.store, data, 10)
        original = pts.store.read
        reads = 0

        async def read(
            stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
        ) -> ReadResult:
            nonlocal reads
            reads += 1
            if reads == 3:  # the response has started: the stream goes away
                await pts.store.delete_stream(stream_id)
            return await original(stream_id, offset, max_bytes)

        monkeypatch.setattr(pts.store, "read", read)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"/streams/{stream_id}")
        monkeypatch.undo()
        assert (await client.get(f"/streams/{stream_id}")).status_code == 404

"""The Durable Streams protocol on pts's tables (the official suite runs in CI too).

These tests cover what the conformance suite cannot see: that the protocol and
pts are one model (a driven pts stream read through the protocol, a protocol
stream read through pts), access control, the read-only `pts/` paths, soft
delete through the Python API, garbage collection, and the wire rules.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar, Request, Response, post
from litestar.params import FromPath
from litestar.testing import AsyncTestClient

from pts import Append, PersistentTextStreaming, PTSPlugin
from pts.errors import StreamNotFound
from pts.flush import FlushPolicy
from pts.http.durable import wire
from pts.models import CreateOutcome, StreamInfo, StreamStatus
from pts.plugin import Action, Authorize, allow_everything
from pts.settings import Driver
from tests.support.servers import serve_app
from tests.support.sse import collect
from tests.support.waiting import until_stats

# Multi-byte characters cut across tokens and flushes: the bytes must survive as they are.
TOKENS = [
    "Héllo",
    " wörld",
    ". 你好",
    "，世界",
    "。 👩‍👩‍👧",
    " e\u0301tude",
    ".\nLast",
    " line",
    ".",
]
TEXT = "".join(TOKENS)


def make_app(
    pts: PersistentTextStreaming,
    authorize: Authorize | None = allow_everything,
    *,
    long_poll_timeout: float = 1.0,
) -> Litestar:
    async def generate(_request: object, _stream_id: uuid.UUID, append: Append) -> None:
        for token in TOKENS:
            await append(token)
            await asyncio.sleep(0.01)

    @post("/drive/{stream_id:uuid}")
    async def drive(
        request: Request[Any, Any, Any], stream_id: FromPath[uuid.UUID]
    ) -> Response[Any]:
        return await pts.stream(request, stream_id, generate)

    return Litestar(
        route_handlers=[drive],
        plugins=[PTSPlugin(pts, authorize=authorize, long_poll_timeout=long_poll_timeout)],
    )


@pytest.fixture
def pts(db_url: str, driver: Driver) -> PersistentTextStreaming:
    # Small flushes: a driven answer becomes several rows, so reads cross chunk boundaries.
    # No sweeper: the garbage-collection tests count what they collect themselves.
    return PersistentTextStreaming(
        dsn=db_url, driver=driver, flush=FlushPolicy(max_bytes=8, max_delay=0.01), sweeper=False
    )


@pytest.fixture
async def client(pts: PersistentTextStreaming) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(make_app(pts)) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        yield c


async def read_sse(client: httpx.AsyncClient, url: str) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE response read to its end (the stream closes it), parsed
    as the SSE spec says (one space after ``data:`` is dropped); bounded by a hang guard."""
    async with asyncio.timeout(15):
        events = await collect(client, url, content_type="text/event-stream")
    return [(event.event, event.data) for event in events]


# -- one model ---------------------------------------------------------------------


async def test_a_driven_pts_stream_reads_byte_exact_through_the_protocol(
    pts: PersistentTextStreaming, client: httpx.AsyncClient
) -> None:
    stream_id = await pts.create_stream()
    path = f"/v1/stream/pts/{stream_id}"
    # An SSE reader that joins before the answer starts sees it live, to the close.
    watcher = asyncio.create_task(read_sse(client, f"{path}?offset=-1&live=sse"))
    await until_stats(pts, lambda s: s.subscribers == 1, "the SSE reader is subscribed")
    driven = await client.post(f"/drive/{stream_id}")
    assert driven.status_code == 200
    assert driven.text == TEXT

    events = await watcher
    text = "".join(data for name, data in events if name == "data")
    assert text == TEXT
    controls = [json.loads(data) for name, data in events if name == "control"]
    assert controls[-1]["streamClosed"] is True
    assert controls[-1]["streamNextOffset"] == wire.format_offset(len(TEXT.encode()))
    assert events[-1][0] == "control"

    caught_up = await client.get(path, params={"offset": "-1"})
    assert caught_up.status_code == 200
    assert caught_up.headers["content-type"] == "text/plain"
    assert caught_up.content == TEXT.encode()
    assert caught_up.headers["stream-closed"] == "true"
    assert caught_up.headers["stream-up-to-date"] == "true"
    assert (await pts.get_stream(stream_id)).status is StreamStatus.DONE

    # Resuming from every chunk boundary the protocol hands out gives the rest, exactly.
    offset = "-1"
    pieces = []
    for _ in range(100):
        page = await client.get(path, params={"offset": offset})
        pieces.append(page.content)
        if page.headers.get("stream-up-to-date") == "true":
            break
        offset = page.headers["stream-next-offset"]
    assert b"".join(pieces) == TEXT.encode()


async def test_a_protocol_stream_is_a_pts_stream(
    pts: PersistentTextStreaming, client: httpx.AsyncClient
) -> None:
    created = await client.put("/v1/stream/chats/7", headers={"content-type": "text/plain"})
    assert created.status_code == 201
    assert created.headers["location"].endswith("/v1/stream/chats/7")
    info = await pts.store.get_stream_by_path("chats/7")
    assert (info.status, info.content_type, info.size) == (StreamStatus.PENDING, "text/plain", 0)

    subscriber = asyncio.create_task(_collect(pts.read_stream(info.id)))
    sse = asyncio.create_task(client.get(f"/streams/{info.id}/events"))
    data = TEXT.encode()
    cut = data.index("你".encode()) + 1  # inside a character
    for part in (data[:cut], data[cut:]):
        appended = await client.post(
            "/v1/stream/chats/7", content=part, headers={"content-type": "text/plain"}
        )
        assert appended.status_code == 204, appended.text
    closed = await client.post("/v1/stream/chats/7", headers={"stream-closed": "true"})
    assert closed.status_code == 204
    assert closed.headers["stream-closed"] == "true"

    async with asyncio.timeout(10):
        assert await subscriber == TEXT
        events = (await sse).text
    assert "event: status" in events
    assert '"status": "done"' in events
    body = await pts.get_stream_body(info.id)
    assert (body.text, body.status) == (TEXT, StreamStatus.DONE)
    # The same stream, by id, through the protocol's pts/ path.
    by_id = await client.get(f"/v1/stream/pts/{info.id}", params={"offset": "-1"})
    assert by_id.content == data


async def _collect(texts: AsyncIterator[str]) -> str:
    return "".join([text async for text in texts])


async def test_binary_and_json_streams_over_sse(client: httpx.AsyncClient) -> None:
    blob = bytes(range(256))
    await client.put("/v1/stream/bin", headers={"content-type": "application/octet-stream"})
    await client.post(
        "/v1/stream/bin", content=blob, headers={"content-type": "application/octet-stream"}
    )
    await client.post("/v1/stream/bin", headers={"stream-closed": "true"})
    events = await read_sse(client, "/v1/stream/bin?offset=-1&live=sse")
    decoded = b"".join(base64.b64decode(data) for name, data in events if name == "data")
    assert decoded == blob

    await client.put("/v1/stream/j", headers={"content-type": "application/json"})
    for body in ([{"a": "é\n"}, 2], {"b": None}):
        answer = await client.post(
            "/v1/stream/j", content=json.dumps(body), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 204
    await client.post("/v1/stream/j", headers={"stream-closed": "true"})
    events = await read_sse(client, "/v1/stream/j?offset=-1&live=sse")
    messages = [m for name, data in events if name == "data" for m in json.loads(data)]
    assert messages == [{"a": "é\n"}, 2, {"b": None}]
    whole = await client.get("/v1/stream/j", params={"offset": "-1"})
    assert whole.json() == messages


async def test_json_streams_are_read_from_message_boundaries(client: httpx.AsyncClient) -> None:
    await client.put("/v1/stream/j2", headers={"content-type": "application/json"})
    first = await client.post(
        "/v1/stream/j2", content=b'["abcdef"]', headers={"content-type": "application/json"}
    )
    end = first.headers["stream-next-offset"]
    inside = wire.format_offset(3)
    answer = await client.get("/v1/stream/j2", params={"offset": inside})
    assert answer.status_code == 400
    assert answer.headers["x-content-type-options"] == "nosniff"
    live = await client.get("/v1/stream/j2", params={"offset": inside, "live": "sse"})
    assert live.status_code == 400
    assert live.json()["error"] == "bad_request"
    assert (await client.get("/v1/stream/j2", params={"offset": end})).json() == []


async def test_a_long_poll_wakes_on_append_and_stops_when_the_client_hangs_up(
    pts: PersistentTextStreaming,
) -> None:
    async with (
        serve_app(make_app(pts, long_poll_timeout=60)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        await client.put("/v1/stream/lp", headers={"content-type": "text/plain"})
        tail = wire.format_offset(0)
        poll = asyncio.create_task(client.get(f"/v1/stream/lp?offset={tail}&live=long-poll"))
        # Parked before the write that must wake it (else it would answer the news at once).
        await until_stats(pts, lambda s: s.subscribers == 1, "the long-poll is parked")
        assert not poll.done()
        await client.post("/v1/stream/lp", content=b"news", headers={"content-type": "text/plain"})
        woke = await asyncio.wait_for(poll, 10)
        assert (woke.status_code, woke.content) == (200, b"news")
        assert woke.headers["stream-next-offset"] == wire.format_offset(4)
        assert woke.headers["stream-cursor"].isdigit()

        # A client that gives up: the server stops waiting (and following the stream).
        waiting_url = f"/v1/stream/lp?offset={wire.format_offset(4)}&live=long-poll"
        with pytest.raises(httpx.ReadTimeout):
            await client.get(waiting_url, timeout=0.5)
        await until_stats(pts, lambda s: s.tails == s.subscribers == 0, "the server stopped")


# -- paths, access control, errors ---------------------------------------------------


async def test_pts_paths_are_read_only_and_reserved_paths_refused(
    pts: PersistentTextStreaming, client: httpx.AsyncClient
) -> None:
    stream_id = await pts.create_stream()
    path = f"/v1/stream/pts/{stream_id}"
    assert (await client.head(path)).status_code == 200
    for method in ("PUT", "POST", "DELETE"):
        answer = await client.request(method, path, content=b"x")
        assert answer.status_code == 405, method
        assert answer.json()["error"] == "method_not_allowed"
    assert (await client.get("/v1/stream/pts/not-a-uuid")).status_code == 404
    assert (await client.put("/v1/stream/__ds/subscriptions")).status_code == 404
    assert (await client.get(f"/v1/stream/pts/{uuid.uuid4()}?offset=-1")).status_code == 404


async def test_a_driven_stream_refuses_protocol_appends(
    pts: PersistentTextStreaming, client: httpx.AsyncClient
) -> None:
    info = await pts.store.create_stream(path="answer/1")
    await pts.store.claim(info.id)
    answer = await client.post(
        "/v1/stream/answer/1", content=b"intruder", headers={"content-type": "text/plain"}
    )
    assert answer.status_code == 409
    assert answer.json()["error"] == "already_driven"
    assert (await pts.get_stream(info.id)).size == 0


async def test_access_control_asks_the_hook_for_each_action(
    pts: PersistentTextStreaming,
) -> None:
    asked: list[tuple[Action, str | None]] = []

    def authorize(
        request: Request[Any, Any, Any], action: Action, stream: StreamInfo | None
    ) -> bool:
        asked.append((action, None if stream is None else stream.path))
        return request.headers.get("x-user") == "ann"

    ann = {"x-user": "ann", "content-type": "text/plain"}
    async with (
        serve_app(make_app(pts, authorize)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        assert (await client.put("/v1/stream/s", headers=ann)).status_code == 201
        assert (await client.post("/v1/stream/s", content=b"x", headers=ann)).status_code == 204
        assert (await client.get("/v1/stream/s?offset=-1", headers=ann)).content == b"x"
        assert (await client.head("/v1/stream/s", headers=ann)).status_code == 200
        assert asked == [("create", None), ("drive", "s"), ("view", "s"), ("view", "s")]

        bob = {"x-user": "bob", "content-type": "text/plain"}
        for method, body in (("GET", None), ("POST", b"y"), ("DELETE", None), ("PUT", None)):
            denied = await client.request(method, "/v1/stream/s", content=body, headers=bob)
            assert denied.status_code == 403, method
            assert denied.json()["error"] == "forbidden"
            assert denied.headers["x-content-type-options"] == "nosniff"
        assert (await client.delete("/v1/stream/s", headers=ann)).status_code == 204
        assert asked[-1] == ("delete", "s")


async def test_without_a_hook_the_admin_token_is_required(
    pts: PersistentTextStreaming, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTS_ADMIN_TOKEN", "tok")
    async with (
        serve_app(make_app(pts, authorize=None)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        anonymous = await client.put("/v1/stream/x")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        # Whether a stream exists is not told to anonymous callers.
        assert (await client.get("/v1/stream/missing?offset=-1")).status_code == 401
        admin = {"authorization": "Bearer tok"}
        assert (await client.put("/v1/stream/x", headers=admin)).status_code == 201


async def test_cors_answers_any_origin_by_default_or_only_the_listed_ones(
    pts: PersistentTextStreaming,
) -> None:
    async with AsyncTestClient(make_app(pts)) as client:
        answer = await client.get("/v1/stream/nowhere", headers={"origin": "https://a.example"})
        assert answer.status_code == 404
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "Stream-Next-Offset" in answer.headers["access-control-expose-headers"]

    app = Litestar(
        plugins=[PTSPlugin(pts, authorize=allow_everything, cors_origins=["https://app.example"])]
    )
    async with AsyncTestClient(app) as client:
        await client.put("/v1/stream/c", headers={"content-type": "text/plain"})
        listed = await client.get(
            "/v1/stream/c?offset=-1", headers={"origin": "https://app.example"}
        )
        assert listed.headers["access-control-allow-origin"] == "https://app.example"
        assert listed.headers["vary"] == "Origin"
        other = await client.get(
            "/v1/stream/c?offset=-1", headers={"origin": "https://evil.example"}
        )
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers
        assert other.headers["x-content-type-options"] == "nosniff"


async def test_bad_requests_get_a_json_400(client: httpx.AsyncClient) -> None:
    await client.put("/v1/stream/b", headers={"content-type": "text/plain"})
    for params in ("offset=", "offset=-1&offset=now", "offset=abc", "live=sse", "offset=-1&live=x"):
        answer = await client.get(f"/v1/stream/b?{params}")
        assert answer.status_code == 400, params
        assert answer.json()["error"] == "bad_request"
    past = await client.get("/v1/stream/b", params={"offset": wire.format_offset(99)})
    assert past.status_code == 400
    for headers in ({"stream-ttl": "1.5"}, {"stream-ttl": "1", "stream-expires-at": "2030-01-01Z"}):
        assert (await client.put("/v1/stream/c", headers=headers)).status_code == 400
    assert (
        await client.put("/v1/stream/c", headers={"stream-expires-at": "2030-01-01T00:00"})
    ).status_code == 400
    huge = await client.post(
        "/v1/stream/b",
        content=b"x" * (10 * 1024 * 1024 + 1),
        headers={"content-type": "text/plain"},
    )
    assert huge.status_code == 413


# -- lifecycle -----------------------------------------------------------------------


async def test_deleting_a_forked_stream_through_pts_is_a_soft_delete(
    db_url: str, pts: PersistentTextStreaming, client: httpx.AsyncClient
) -> None:
    text = {"content-type": "text/plain"}
    await client.put("/v1/stream/src", headers=text, content=b"shared ")
    fork = await client.put("/v1/stream/fork", headers={"stream-forked-from": "/v1/stream/src"})
    assert fork.status_code == 201
    await client.post("/v1/stream/fork", headers=text, content=b"own")
    source = await pts.store.get_stream_by_path("src")

    await pts.delete_stream(source.id)
    assert (await client.head("/v1/stream/src")).status_code == 410
    assert (await client.get("/v1/stream/fork?offset=-1")).content == b"shared own"
    assert (await pts.get_stream_body((await pts.store.get_stream_by_path("fork")).id)).text == (
        "shared own"
    )
    connection = await asyncpg.connect(db_url)
    try:
        text = await connection.fetchval("SELECT text FROM pts.stream_bodies WHERE path = 'fork'")
    finally:
        await connection.close()
    assert text == "shared own"

    assert (await client.delete("/v1/stream/fork")).status_code == 204
    assert (await client.head("/v1/stream/src")).status_code == 404
    with pytest.raises(Exception, match="not found"):
        await pts.get_stream(source.id)


async def test_expired_streams_are_collected(
    pts: PersistentTextStreaming, client: httpx.AsyncClient
) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    created = await client.put("/v1/stream/short", headers={"stream-expires-at": soon})
    assert created.status_code == 201
    assert (await client.put("/v1/stream/long", headers={"stream-ttl": "3600"})).status_code == 201
    info = await pts.store.get_stream_by_path("short")
    await asyncio.sleep(0.7)
    assert (await client.head("/v1/stream/short")).status_code == 404
    assert await pts.store.collect_garbage() == 1
    with pytest.raises(Exception, match="not found"):
        await pts.get_stream(info.id)
    assert (await client.head("/v1/stream/long")).headers["stream-ttl"] == "3600"


async def test_the_sweeper_collects_expired_streams(db_url: str, driver: Driver) -> None:
    async with PersistentTextStreaming(dsn=db_url, driver=driver, sweep_interval=0.1) as pts:
        past = datetime.now(UTC) - timedelta(seconds=1)
        outcome, stream_id = await pts.store.ds_create(
            "old", content_type="text/plain", expires_at=past
        )
        assert outcome is CreateOutcome.CREATED
        assert stream_id is not None
        async with asyncio.timeout(10):  # a hang guard: the sweeper runs every ~0.1 s
            while True:
                try:
                    await pts.get_stream(stream_id)
                except StreamNotFound:
                    break
                await asyncio.sleep(0.05)


async def test_a_deleted_source_goes_when_its_last_fork_expires(
    pts: PersistentTextStreaming, client: httpx.AsyncClient
) -> None:
    await client.put("/v1/stream/s1", headers={"content-type": "text/plain"}, content=b"abc")
    soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    fork = await client.put(
        "/v1/stream/f1", headers={"stream-forked-from": "/v1/stream/s1", "stream-expires-at": soon}
    )
    assert fork.status_code == 201
    assert (await client.delete("/v1/stream/s1")).status_code == 204
    assert (await client.head("/v1/stream/s1")).status_code == 410  # the fork holds it
    source = await pts.store.get_stream_by_path("s1")
    await asyncio.sleep(0.7)
    # The fork expired: nothing holds the source any more, and both are collected.
    assert (await client.head("/v1/stream/s1")).status_code == 404
    assert await pts.store.collect_garbage() == 2
    with pytest.raises(Exception, match="not found"):
        await pts.get_stream(source.id)
    assert await pts.store.collect_garbage() == 0


# -- the wire format -----------------------------------------------------------------


def test_offsets_sort_as_strings_and_round_trip() -> None:
    offsets = [wire.format_offset(n) for n in (0, 9, 10, 12345, 10**15)]
    assert offsets == sorted(offsets)
    assert [wire.parse_offset(o) for o in offsets] == [0, 9, 10, 12345, 10**15]
    assert wire.parse_offset("-1") == "-1"
    assert wire.parse_offset("now") == "now"
    for bad in ("", "0", "0000000000000000_000000000000001\n", "1" * 16 + "_" + "0" * 16, "a_b"):
        with pytest.raises(wire.BadRequest):
            wire.parse_offset(bad)


def test_json_framing_flattens_one_level() -> None:
    unit = wire.frame_json(b'[[1,2],{"a":"\xc3\xa9"},"s"]', allow_empty=False)
    assert wire.split_json_unit(unit) == [[1, 2], {"a": "é"}, "s"]
    assert wire.json_array(unit + wire.frame_json(b"3", allow_empty=False)) == (
        b'[[1,2],{"a":"\xc3\xa9"},"s",3]'
    )
    assert wire.json_array(b"") == b"[]"
    assert wire.frame_json(b"[]", allow_empty=True) == b""
    for bad in (b"[]", b"{", b"NaN", b"\xff"):
        with pytest.raises(wire.BadRequest):
            wire.frame_json(bad, allow_empty=False)


def test_sse_events_cannot_be_injected() -> None:
    event = wire.data_event('a\r\nevent: control\rdata:{"x":1}\nb')
    assert event == b'event: data\ndata:a\ndata:event: control\ndata:data:{"x":1}\ndata:b\n\n'
    # SSE readers drop one space after "data:": a line that starts with one keeps it.
    assert wire.data_event(" a\n  b") == b"event: data\ndata:  a\ndata:   b\n\n"
    control = wire.control_event(5, cursor="7", up_to_date=True, closed=False)
    assert control == (
        b'event: control\ndata:{"streamNextOffset":"0000000000000000_0000000000000005",'
        b'"streamCursor":"7","upToDate":true}\n\n'
    )
    closing = wire.control_event(5, cursor="7", up_to_date=True, closed=True)
    assert b"streamCursor" not in closing
    assert b'"streamClosed":true' in closing


def test_cursors_move_ahead_of_an_echoed_cursor() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    current = wire.cursor_for(None, now)
    assert current == str(int((now - wire.CURSOR_EPOCH) // 20))
    assert wire.cursor_for("12", now) == current  # an old cursor: the current interval
    for _ in range(50):
        assert int(wire.cursor_for(current, now)) > int(current)


def test_producer_headers_go_together() -> None:
    assert wire.parse_producer({}) is None
    assert wire.parse_producer(
        {"producer-id": "p", "producer-epoch": "1", "producer-seq": "2"}
    ) == ("p", 1, 2)
    for headers in (
        {"producer-id": "p", "producer-epoch": "1"},
        {"producer-id": "", "producer-epoch": "1", "producer-seq": "2"},
        {"producer-id": "p", "producer-epoch": "1e3", "producer-seq": "2"},
        {"producer-id": "p", "producer-epoch": "1", "producer-seq": str(2**53)},
    ):
        with pytest.raises(wire.BadRequest):
            wire.parse_producer(headers)

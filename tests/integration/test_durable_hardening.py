"""The Durable Streams edge under hostile input (issue 10: findings 1, 4, 5 and 8).

Access is checked before a body byte is read; every number, time, name and
JSON body is validated before anything is written, and a bad one is a JSON 400
(never a 500, and never a row that later breaks reads). Some inputs cannot be
sent through uvicorn (it refuses NUL bytes in header values itself), but the
plugin may be embedded under any ASGI server: those are sent to the app directly.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from litestar import Litestar, Request
from litestar.types import HTTPRequestEvent, Message

from pts import PersistentTextStreaming
from pts.http.durable import wire
from pts.models import StreamInfo
from pts.plugin import Action
from tests.integration.test_durable import make_app
from tests.integration.test_durable import pts as pts  # the fixture
from tests.support.servers import serve_app

TEXT = {"content-type": "text/plain"}
JSON = {"content-type": "application/json"}
HUGE = "9" * 5000  # past Python's 4300-digit int() limit


@pytest.fixture
async def served(pts: PersistentTextStreaming) -> AsyncIterator[tuple[Litestar, str]]:
    app = make_app(pts)
    async with serve_app(app) as url:
        yield app, url


@pytest.fixture
async def client(served: tuple[Litestar, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served[1], timeout=30) as c:
        yield c


def assert_400(answer: httpx.Response, label: object = "") -> None:
    assert answer.status_code == 400, (label, answer.status_code, answer.text)
    assert answer.json()["error"] == "bad_request", (label, answer.text)


# -- in-process ASGI requests --------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    body_reads: int
    """How many ``http.request`` messages the app took from ``receive``."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Body:
    """A request body in chunks, or an endless one; counts what the app reads of it."""

    chunks: list[bytes]
    endless: bool
    reads: int = 0

    async def receive(self) -> HTTPRequestEvent:
        if self.endless:  # a client that keeps sending
            self.reads += 1
            return {"type": "http.request", "body": b"x" * 65536, "more_body": True}
        if self.reads < max(1, len(self.chunks)):
            part = self.chunks[self.reads] if self.chunks else b""
            self.reads += 1
            more = self.reads < len(self.chunks)
            return {"type": "http.request", "body": part, "more_body": more}
        await asyncio.Event().wait()  # then nothing, until the app stops listening
        raise AssertionError("unreachable")


async def asgi(
    app: Litestar,
    method: str,
    raw_path: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    chunks: Iterable[bytes] = (),
    *,
    endless: bool = False,
    query: bytes = b"",
) -> Answer:
    """One request straight into the app (its lifespan already running under serve_app)."""
    path = unquote(raw_path.decode("latin-1"), errors="surrogateescape")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"test"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    source = _Body(list(chunks), endless)
    out: list[Message] = []

    async def send(message: Message) -> None:
        out.append(message)

    async with asyncio.timeout(20):
        await app(scope, source.receive, send)  # type: ignore[arg-type]
    start = next(m for m in out if m["type"] == "http.response.start")
    return Answer(
        status=start["status"],
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]},
        body=b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body"),
        body_reads=source.reads,
    )


# -- finding 1: access before the body -------------------------------------------------


async def _status_line_for_partial_post(url: str, path: str, headers: dict[str, str]) -> bytes:
    """Send a POST's headers and only the first KiB of its declared 5 MiB body: the answer
    must come without the rest (a server that waits for the body never answers)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {5 << 20}\r\n"
            f"content-type: text/plain\r\n{head}\r\n".encode()
            + b"x" * 1024
        )
        await writer.drain()
        async with asyncio.timeout(15):  # a hang guard: the old code never answered
            return await reader.readuntil(b"\r\n")
    finally:
        writer.close()


async def test_an_anonymous_append_is_refused_before_its_body_is_read(
    pts: PersistentTextStreaming, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTS_ADMIN_TOKEN", "tok")
    app = make_app(pts, authorize=None)
    async with serve_app(app) as url:
        status = await _status_line_for_partial_post(url, "/v1/stream/a", {})
        assert status.startswith(b"HTTP/1.1 401"), status
        # Every route: not one body message is taken from an unauthenticated request.
        for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            answer = await asgi(
                app, method, b"/v1/stream/a", [(b"content-type", b"text/plain")], endless=True
            )
            assert answer.status == 401, (method, answer.body)
            assert answer.body_reads == 0, method
        # The admin still appends (the check did not eat the body).
        admin = [(b"authorization", b"Bearer tok"), (b"content-type", b"text/plain")]
        assert (await asgi(app, "PUT", b"/v1/stream/a", admin)).status == 201
        appended = await asgi(app, "POST", b"/v1/stream/a", admin, [b"he", b"llo"])
        assert appended.status == 204, appended.body
        read = await asgi(app, "GET", b"/v1/stream/a", admin, query=b"offset=-1")
        assert read.body == b"hello"


async def test_a_hook_judges_the_stream_before_its_body_is_read(
    pts: PersistentTextStreaming,
) -> None:
    asked: list[tuple[Action, str | None]] = []

    def authorize(
        request: Request[Any, Any, Any], action: Action, stream: StreamInfo | None
    ) -> bool:
        asked.append((action, None if stream is None else stream.path))
        return request.headers.get("x-user") == "ann"

    app = make_app(pts, authorize)
    ann = [(b"x-user", b"ann"), (b"content-type", b"text/plain")]
    async with serve_app(app) as url:
        assert (await asgi(app, "PUT", b"/v1/stream/s", ann)).status == 201
        status = await _status_line_for_partial_post(url, "/v1/stream/s", {"x-user": "bob"})
        assert status.startswith(b"HTTP/1.1 403"), status
        assert asked[-1] == ("drive", "s")
        # A stream that does not exist: 404 before the body, too.
        status = await _status_line_for_partial_post(url, "/v1/stream/nowhere", {"x-user": "ann"})
        assert status.startswith(b"HTTP/1.1 404"), status
        for method in ("GET", "HEAD", "POST", "DELETE", "PUT"):
            bob = [(b"x-user", b"bob"), (b"content-type", b"text/plain")]
            answer = await asgi(app, method, b"/v1/stream/s", bob, endless=True)
            assert answer.status == 403, (method, answer.body)
            assert answer.body_reads == 0, method
        appended = await asgi(app, "POST", b"/v1/stream/s", ann, [b"ok"])
        assert appended.status == 204, appended.body


# -- finding 4: lifetimes Postgres and Python can hold -----------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"stream-ttl": str(wire.MAX_TTL_SECONDS + 1)},
        {"stream-ttl": str(10**12)},  # year 33000: created, then every read was a 500
        {"stream-ttl": str(2**63)},
        {"stream-ttl": "99999999999999999999"},
        {"stream-ttl": HUGE},
        {"stream-expires-at": "9999-12-31T23:59:59-05:00"},  # year 10000 in UTC
        {"stream-expires-at": "9999-12-31T23:59:59Z"},  # Python's last second: no margin
        {"stream-expires-at": "0001-01-01T00:00:00+05:00"},  # year 0 in UTC
        {"stream-expires-at": "0001-01-01T00:00:00Z"},
    ],
)
async def test_lifetimes_out_of_range_are_refused_before_any_write(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    answer = await client.put("/v1/stream/life", headers={**TEXT, **headers})
    assert_400(answer, headers)
    # Nothing was created: the path is free and every verb answers normally.
    assert (await client.head("/v1/stream/life")).status_code == 404
    assert (await client.get("/v1/stream/life")).status_code == 404
    assert (await client.delete("/v1/stream/life")).status_code == 404
    assert (await client.put("/v1/stream/life", headers=TEXT)).status_code == 201


async def test_the_longest_lifetimes_are_kept_and_served(client: httpx.AsyncClient) -> None:
    ttl = {"stream-ttl": str(wire.MAX_TTL_SECONDS)}
    assert (await client.put("/v1/stream/long-ttl", headers={**TEXT, **ttl})).status_code == 201
    head = await client.head("/v1/stream/long-ttl")
    assert head.status_code == 200
    assert head.headers["stream-ttl"] == str(wire.MAX_TTL_SECONDS)
    assert (await client.get("/v1/stream/long-ttl?offset=-1")).status_code == 200
    last = "9998-12-31T23:59:59.999Z"
    at = {"stream-expires-at": last}
    assert (await client.put("/v1/stream/late", headers={**TEXT, **at})).status_code == 201
    head = await client.head("/v1/stream/late")
    assert head.headers["stream-expires-at"] == last
    assert (await client.delete("/v1/stream/late")).status_code == 204


# -- finding 5: only finite, standard JSON ----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[1e999]",
        b"-1e999",
        b'{"a": [1, 2.5e400]}',
        b'"\\ud800"',
        b'["\\udc00x"]',
        b'{"\\ud83d": 1}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"[" * (wire.MAX_JSON_DEPTH + 1) + b"]" * (wire.MAX_JSON_DEPTH + 1),
        b"[" * 100_000,
        HUGE.encode(),
        b"NaN",
        b"[Infinity]",
    ],
)
async def test_json_that_is_not_finite_standard_json_is_refused(
    client: httpx.AsyncClient, body: bytes
) -> None:
    assert (await client.put("/v1/stream/j", headers=JSON, content=b"[1]")).status_code == 201
    assert_400(await client.post("/v1/stream/j", headers=JSON, content=body), body[:20])
    assert_400(await client.put("/v1/stream/j2", headers=JSON, content=body), body[:20])
    read = await client.get("/v1/stream/j?offset=-1")
    assert read.json() == [1]  # nothing appended: the stream still reads as JSON
    assert (await client.head("/v1/stream/j2")).status_code == 404


async def test_json_at_the_depth_limit_and_nul_characters_round_trip(
    client: httpx.AsyncClient,
) -> None:
    deep = b"[" * wire.MAX_JSON_DEPTH + b"]" * wire.MAX_JSON_DEPTH
    assert (await client.put("/v1/stream/deep", headers=JSON, content=deep)).status_code == 201
    body = await client.get("/v1/stream/deep?offset=-1")
    assert body.status_code == 200
    assert body.content == deep  # one message: the top-level array's one element
    nul = {"text": "a\u0000b", "list": ["\u0000"]}
    appended = await client.post("/v1/stream/deep", headers=JSON, content=json.dumps(nul))
    assert appended.status_code == 204
    messages = (await client.get("/v1/stream/deep?offset=-1")).json()
    assert messages[-1] == nul
    # Many brackets, none deep: accepted (the depth is measured, not guessed).
    wide = json.dumps([[i] for i in range(3 * wire.MAX_JSON_DEPTH)])
    assert (await client.post("/v1/stream/deep", headers=JSON, content=wide)).status_code == 204


# -- finding 8: numbers, names and bytes -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("producer-epoch", HUGE),
        ("producer-seq", HUGE),
        ("producer-epoch", "99999999999999999999"),
        ("producer-id", "p" * (wire.MAX_NAME_BYTES + 1)),
        ("stream-seq", "s" * (wire.MAX_NAME_BYTES + 1)),
    ],
)
async def test_producer_and_sequence_headers_out_of_range_are_400(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    assert (await client.put("/v1/stream/p", headers=TEXT)).status_code == 201
    headers = {"producer-id": "w", "producer-epoch": "0", "producer-seq": "0"}
    if name == "stream-seq":
        headers = {}
    headers[name] = value
    answer = await client.post("/v1/stream/p", content=b"x", headers={**TEXT, **headers})
    assert_400(answer, name)
    assert (await client.head("/v1/stream/p")).headers["stream-next-offset"] == wire.format_offset(
        0
    )


async def test_a_producer_id_an_index_cannot_hold_is_400(client: httpx.AsyncClient) -> None:
    assert (await client.put("/v1/stream/p", headers=TEXT)).status_code == 201
    noise = "".join(random.Random(7).choices(string.ascii_letters, k=3000))  # incompressible
    headers = {**TEXT, "producer-id": noise, "producer-epoch": "0", "producer-seq": "0"}
    assert_400(await client.post("/v1/stream/p", content=b"x", headers=headers))
    longest = {**headers, "producer-id": noise[: wire.MAX_NAME_BYTES]}
    assert (await client.post("/v1/stream/p", content=b"x", headers=longest)).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"offset": "0000000000000000_000000000000000٣"},  # Unicode digits are not offsets
        {"offset": "99999999999999999999_99999999999999999999"},
        {"offset": "0000000000000000_" + HUGE},
        {"offset": HUGE},
    ],
)
async def test_offsets_out_of_range_are_400(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert (await client.put("/v1/stream/o", headers=TEXT, content=b"abcd")).status_code == 201
    assert_400(await client.get("/v1/stream/o", params=params))


@pytest.mark.parametrize("cursor", [HUGE, "9" * 40, "٣", "-5", "\x00"])
async def test_a_cursor_that_is_not_ours_is_replaced_not_a_500(
    client: httpx.AsyncClient, cursor: str
) -> None:
    assert (await client.put("/v1/stream/c", headers=TEXT, content=b"x")).status_code == 201
    for live in ("long-poll", "sse"):
        params = {"offset": "-1", "live": live, "cursor": cursor}
        if live == "sse":
            # Bounded: the stream is closed below, so the SSE response ends.
            await client.post("/v1/stream/c", headers={"stream-closed": "true"})
        answer = await client.get("/v1/stream/c", params=params)
        assert answer.status_code == 200, (live, answer.text)
    poll = await client.get(
        "/v1/stream/c", params={"offset": "-1", "live": "long-poll", "cursor": HUGE}
    )
    assert poll.headers.get("stream-cursor") is None or poll.headers["stream-cursor"].isdigit()


@pytest.mark.parametrize(
    "headers",
    [
        {"stream-fork-offset": wire.format_offset(0), "stream-fork-sub-offset": HUGE},
        {"stream-fork-offset": wire.format_offset(0), "stream-fork-sub-offset": str(2**63)},
        {"stream-fork-offset": "0000000000000000_" + HUGE},
        {"stream-forked-from": "a" * (wire.MAX_NAME_BYTES + 1)},
    ],
)
async def test_fork_headers_out_of_range_are_400(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await client.put("/v1/stream/src", headers=TEXT, content=b"abc")).status_code == 201
    answer = await client.put("/v1/stream/fork", headers={"stream-forked-from": "src", **headers})
    assert_400(answer, headers)
    assert (await client.head("/v1/stream/fork")).status_code == 404


@pytest.mark.parametrize(
    "raw_path",
    [
        "a%00b",
        "a%ED%A0%80",  # a UTF-16 surrogate, encoded as if it were a character
        "a%FF",  # not UTF-8: two such paths would otherwise name one stream
        "a%C3",  # a cut-off character
        "".join(random.Random(3).choices(string.ascii_letters, k=3000)),  # past an index entry
        "a" * (wire.MAX_NAME_BYTES + 1),
        quote("é" * (wire.MAX_NAME_BYTES // 2 + 1)),  # the bound is in bytes, not characters
    ],
    ids=["nul", "surrogate", "not-utf8", "cut", "incompressible-3000", "1025", "bytes"],
)
async def test_paths_postgres_cannot_key_are_400_for_every_verb(
    client: httpx.AsyncClient, raw_path: str
) -> None:
    url = "/v1/stream/" + raw_path
    for method in ("PUT", "POST", "GET", "HEAD", "DELETE"):
        body = b"x" if method == "POST" else None
        answer = await client.request(method, url, content=body, headers=TEXT)
        assert answer.status_code == 400, (method, answer.status_code, answer.text)
        if method != "HEAD":
            assert answer.json()["error"] == "bad_request"
    longest = "/v1/stream/" + quote("é" * (wire.MAX_NAME_BYTES // 2))
    assert (await client.put(longest, headers=TEXT)).status_code == 201
    assert (await client.get(longest + "?offset=-1")).status_code == 200


async def test_a_valid_unicode_path_is_still_a_stream(client: httpx.AsyncClient) -> None:
    url = "/v1/stream/" + quote("chats/你好/\ufffd")
    assert (await client.put(url, headers=TEXT, content=b"x")).status_code == 201
    assert (await client.get(url + "?offset=-1")).content == b"x"


@pytest.mark.parametrize(
    ("method", "header", "value"),
    [
        ("POST", b"producer-id", b"p\x00"),
        ("POST", b"stream-seq", b"a\x00"),
        ("POST", b"content-type", b"text/plain\x00"),
        ("PUT", b"content-type", b"text/\x00plain"),
        ("PUT", b"stream-forked-from", b"src\x00"),
        ("PUT", b"content-type", b"t/" + b"x" * wire.MAX_NAME_BYTES),
        ("POST", b"content-length", b"\xb2"),  # a superscript two: str.isdigit() says yes
        ("POST", b"content-length", HUGE.encode()),
    ],
)
async def test_header_values_postgres_cannot_store_are_400(
    served: tuple[Litestar, str], method: str, header: bytes, value: bytes
) -> None:
    app, _ = served
    assert (
        await asgi(app, "PUT", b"/v1/stream/src", [(b"content-type", b"text/plain")])
    ).status == 201
    headers = {b"content-type": b"text/plain", b"producer-epoch": b"0", b"producer-seq": b"0"}
    if header != b"producer-id":
        del headers[b"producer-epoch"], headers[b"producer-seq"]
    headers[header] = value
    target = b"/v1/stream/src" if method == "POST" else b"/v1/stream/new"
    answer = await asgi(
        app, method, target, list(headers.items()), [b"x"] if method == "POST" else []
    )
    assert answer.status == 400, (answer.status, answer.body)
    assert answer.json()["error"] == "bad_request"
    head = await asgi(app, "HEAD", b"/v1/stream/src")
    assert head.headers["stream-next-offset"] == wire.format_offset(0)
    assert (await asgi(app, "HEAD", b"/v1/stream/new")).status == 404


async def test_undecodable_paths_from_any_server_are_400(served: tuple[Litestar, str]) -> None:
    app, _ = served
    # Raw bytes, and a path a server decoded with surrogateescape.
    for raw in (b"/v1/stream/a\xff", b"/v1/stream/a%ed%b2%80", b"/v1/stream/a\x00"):
        answer = await asgi(app, "PUT", raw, [(b"content-type", b"text/plain")])
        assert answer.status == 400, (raw, answer.body)
        assert answer.json()["error"] == "bad_request"

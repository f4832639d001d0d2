"""The protocol's fast path (``pts.http.fast_path``): past Litestar, and answering the same.

Each request goes once to the wrapped app and once to the Litestar app alone,
on streams of their own, and the two answers must be the same byte for byte
(after the stream names): the ordinary ones take the fast path, the odd ones
(a foreign Host or Origin under ``--no-auth``, a path with ``//``) go through
Litestar as before. In process (httpx's ASGI transport), on the real database;
``pts serve`` runs the fast path too, so the conformance suite and the protocol
fuzzing cover it over real sockets.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send

from pts.core import PersistentTextStreaming
from pts.http.app import NO_AUTH_ENV, create_app
from pts.http.fast_path import ProtocolFastPath, create_served_app
from pts.http.plugin import PTSPlugin

BASE = "http://127.0.0.1:8000"
TEXT = {"content-type": "text/plain"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class Counting:
    """An ASGI app that counts the requests it passes on to ``app``."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture
async def pts(db_url: str) -> AsyncIterator[PersistentTextStreaming]:
    async with PersistentTextStreaming(dsn=db_url) as component:
        yield component


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


# (method, path, headers, body); {n} is the stream's name.
REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("PUT", "/v1/stream/{n}", TEXT, b""),
    ("PUT", "/v1/stream/{n}", TEXT, b""),
    ("PUT", "/v1/stream/{n}", {"content-type": "application/json"}, b""),
    ("POST", "/v1/stream/{n}", TEXT, b"hello, "),
    ("POST", "/v1/stream/{n}/", TEXT, b"world"),
    ("POST", "/v1/stream/{n}", {"content-type": "application/json"}, b"[1]"),
    ("POST", "/v1/stream/{n}", {**TEXT, "stream-seq": "b"}, b"!"),
    ("POST", "/v1/stream/{n}", {**TEXT, "stream-seq": "a"}, b"?"),
    ("GET", "/v1/stream/{n}?offset=-1", {}, b""),
    ("GET", "/v1/stream/{n}?offset=nonsense", {}, b""),
    ("GET", "/v1/stream/{n}?offset=now&live=long-poll", {}, b""),
    ("HEAD", "/v1/stream/{n}", {}, b""),
    ("OPTIONS", "/v1/stream/{n}", {"origin": "http://localhost:3000"}, b""),
    ("PATCH", "/v1/stream/{n}", {}, b""),
    ("GET", "/v1/stream/__ds/{n}", {}, b""),
    ("GET", "/v1/stream/", {}, b""),
    ("GET", "/v1/stream/pts/not-a-uuid-{n}", {}, b""),
    ("GET", "/v1/stream/missing-{n}", {}, b""),
    ("GET", "/v1/stream//{n}", {}, b""),
    ("GET", "/v1/stream/{n}", {"host": "evil.example"}, b""),
    ("GET", "/v1/stream/{n}", {"host": "not a host"}, b""),
    ("POST", "/v1/stream/{n}", {**TEXT, "origin": "http://evil.example"}, b"x"),
    ("POST", "/v1/stream/{n}", {**TEXT, "stream-closed": "true"}, b""),
    ("POST", "/v1/stream/{n}", TEXT, b"after the close"),
    ("DELETE", "/v1/stream/{n}", {}, b""),
    ("GET", "/v1/stream/{n}", {}, b""),
    ("GET", "/healthz", {}, b""),
]


async def answers(http: httpx.AsyncClient, name: str) -> list[tuple[int, list[Any], str]]:
    seen = []
    for method, path, headers, body in REQUESTS:
        response = await http.request(method, path.format(n=name), headers=headers, content=body)
        # The names differ, and the ids of the streams (in an ETag, say).
        normal = [
            (key, UUID.sub("ID", value.replace(name, "NAME")))
            for key, value in response.headers.multi_items()
        ]
        content = UUID.sub("ID", response.content.decode("utf-8", "replace").replace(name, "N"))
        seen.append((response.status_code, normal, content))
    return seen


@pytest.mark.parametrize("mode", ["no-auth", "authorize"])
async def test_the_fast_path_answers_as_litestar_does(
    pts: PersistentTextStreaming, mode: str
) -> None:
    if mode == "no-auth":
        app = create_app(
            pts,
            no_auth=True,
            cors_origins=["http://localhost:3000"],
            metrics=False,
            long_poll_timeout=0.2,
        )
    else:
        app = create_app(pts, authorize=lambda *_: True, metrics=False, long_poll_timeout=0.2)
    fast = ProtocolFastPath(app)
    assert fast.active
    async with client(fast) as via_fast, client(app) as via_litestar:
        assert await answers(via_fast, "fast-one") == await answers(via_litestar, "lite-one")


async def test_ordinary_protocol_requests_skip_litestar(pts: PersistentTextStreaming) -> None:
    app = create_app(pts, no_auth=True, metrics=False)
    fast = ProtocolFastPath(app)
    litestar = Counting(app)
    fast.app = litestar  # type: ignore[assignment]
    async with client(fast) as http:
        assert (await http.put("/v1/stream/skip", headers=TEXT)).status_code == 201
        assert (await http.post("/v1/stream/skip", headers=TEXT, content=b"hi")).status_code == 204
        read = await http.get("/v1/stream/skip", params={"offset": "-1"})
        assert (read.status_code, read.content) == (200, b"hi")
        assert litestar.calls == 0
        # What is not the protocol's, or not ordinary, goes through Litestar.
        assert (await http.get("/healthz")).status_code == 200
        doubled = await http.get("/v1/stream//skip", params={"offset": "-1"})
        assert (doubled.status_code, doubled.content) == (200, b"hi")  # Litestar's normal path
        refused = await http.get("/v1/stream/skip", headers={"host": "evil.example"})
        assert refused.status_code == 403
        assert litestar.calls == 3


class Marking:
    """Middleware of an app's own: it must see every request, the protocol's included."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-mine", b"1")]}
            await send(message)

        await self.app(scope, receive, marked)


async def test_an_app_with_middleware_of_its_own_keeps_it(pts: PersistentTextStreaming) -> None:
    app = Litestar(plugins=[PTSPlugin(pts, authorize=lambda *_: True)], middleware=[Marking])
    fast = ProtocolFastPath(app)
    assert not fast.active
    async with client(fast) as http:
        response = await http.put("/v1/stream/mine", headers=TEXT)
    assert response.status_code == 201
    assert response.headers["x-mine"] == "1"


async def test_an_app_with_guards_or_without_the_protocol_takes_no_fast_path(
    pts: PersistentTextStreaming,
) -> None:
    allow = PTSPlugin(pts, authorize=lambda *_: True)
    assert ProtocolFastPath(Litestar(plugins=[allow])).active
    guarded = Litestar(
        plugins=[PTSPlugin(pts, authorize=lambda *_: True)], guards=[lambda *_: None]
    )
    assert not ProtocolFastPath(guarded).active

    @get("/v1/stream/mine/status", sync_to_thread=False)
    def below() -> dict[str, bool]:
        return {"mine": True}

    beside = Litestar(plugins=[PTSPlugin(pts, authorize=lambda *_: True)], route_handlers=[below])
    assert not ProtocolFastPath(beside).active
    without = PTSPlugin(pts, authorize=lambda *_: True, durable_streams_path=None)
    assert not ProtocolFastPath(Litestar(plugins=[without])).active
    assert not ProtocolFastPath(Litestar()).active


def test_pts_serve_runs_the_fast_path(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTS_DATABASE_URL", db_url)
    monkeypatch.setenv(NO_AUTH_ENV, "1")
    served = create_served_app()
    assert served.active
    assert isinstance(served.app, Litestar)

"""``--no-auth`` answers loopback clients only: no foreign Host (DNS rebinding), no foreign Origin.

A page on another site cannot read a no-auth server's answers without CORS,
but a "simple" cross-origin request (a form POST, a text/plain fetch) needs no
preflight and would still be executed; so the server refuses those outright.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from pts.core import PersistentTextStreaming
from pts.http.app import create_app
from pts.http.loopback import is_loopback_origin, split_host_header
from pts.http.noauth import LoopbackGuard
from pts.plugin import Forbidden, PTSPlugin
from tests.support.servers import serve_app

TEXT = {"content-type": "text/plain"}


@pytest.fixture
async def no_auth_url(db_url: str) -> AsyncIterator[str]:
    app = create_app(PersistentTextStreaming(dsn=db_url), no_auth=True, cors_origins=())
    async with serve_app(app) as url:
        yield url


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden"
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "localhost.evil.example", "10.0.0.1", ""]
)
async def test_a_foreign_host_is_refused_on_every_route(no_auth_url: str, host: str) -> None:
    headers = {"host": host}
    async with httpx.AsyncClient(base_url=no_auth_url, headers=headers) as client:
        assert_refused(await client.post("/streams", json={}))
        assert_refused(await client.get(f"/streams/{uuid.uuid4()}"))
        assert_refused(await client.put("/v1/stream/rebound", headers=TEXT))
        assert_refused(await client.get("/v1/stream/rebound"))
        assert_refused(await client.get("/healthz"))
    async with httpx.AsyncClient(base_url=no_auth_url) as client:
        # Nothing was created by the refused PUT.
        assert (await client.head("/v1/stream/rebound")).status_code == 404


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "https://localhost.evil.example", "http://10.0.0.1"]
)
async def test_a_foreign_origin_is_refused_and_changes_nothing(
    no_auth_url: str, origin: str
) -> None:
    async with httpx.AsyncClient(base_url=no_auth_url) as client:
        assert (await client.put("/v1/stream/victim", headers=TEXT)).status_code == 201
        foreign = {"origin": origin}
        # A simple request: text/plain needs no preflight, so the browser sends it.
        assert_refused(
            await client.post("/v1/stream/victim", content=b"injected", headers=TEXT | foreign)
        )
        assert_refused(await client.put("/v1/stream/planted", headers=TEXT | foreign))
        assert_refused(await client.delete("/v1/stream/victim", headers=foreign))
        assert_refused(await client.get("/v1/stream/victim", headers=foreign))
        assert_refused(await client.post("/streams", json={}, headers=foreign))
        assert_refused(
            await client.options(
                "/v1/stream/victim",
                headers=foreign | {"access-control-request-method": "POST"},
            )
        )
        # Nothing changed: the stream is still empty, none was planted.
        assert (await client.get("/v1/stream/victim", params={"offset": "-1"})).content == b""
        assert (await client.head("/v1/stream/planted")).status_code == 404


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8000", None),
        ("localhost", "http://localhost:5173"),
        ("LOCALHOST:1", "http://127.0.0.1:3000"),
        ("[::1]:8000", "http://[::1]:8000"),
        ("127.0.0.1", "https://localhost"),
    ],
)
async def test_loopback_hosts_and_origins_are_served_without_cors(
    no_auth_url: str, host: str, origin: str | None
) -> None:
    headers = {"host": host} | ({} if origin is None else {"origin": origin})
    async with httpx.AsyncClient(base_url=no_auth_url, headers=headers) as client:
        created = await client.post("/streams", json={})
        assert created.status_code == 201, created.text
        assert (await client.get(f"/streams/{created.json()['id']}")).status_code == 200
        put = await client.put("/v1/stream/local", headers=TEXT)
        assert put.status_code == 201, put.text
        post = await client.post("/v1/stream/local", content=b"hi", headers=TEXT)
        assert post.status_code == 204, post.text
        got = await client.get("/v1/stream/local", params={"offset": "-1"})
        assert got.content == b"hi"
        # No CORS headers: a page (even a loopback one) cannot read the answers
        # unless its origin is opted in.
        assert "access-control-allow-origin" not in got.headers


async def test_an_opted_in_origin_is_served_with_cors(db_url: str) -> None:
    app = create_app(
        PersistentTextStreaming(dsn=db_url),
        no_auth=True,
        cors_origins=["https://app.example"],
    )
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        allowed = {"origin": "https://app.example"}
        put = await client.put("/v1/stream/shared", headers=TEXT | allowed)
        assert put.status_code == 201, put.text
        assert put.headers["access-control-allow-origin"] == "https://app.example"
        preflight = await client.options(
            "/v1/stream/shared", headers=allowed | {"access-control-request-method": "POST"}
        )
        assert preflight.status_code == 204
        # Another origin still is not.
        other = {"origin": "https://other.example"}
        assert_refused(await client.post("/v1/stream/shared", content=b"x", headers=TEXT | other))
        # The Host check stays: the opt-in is about origins, not rebinding.
        assert_refused(await client.get("/healthz", headers={"host": "app.example"}))


def test_create_app_cors_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pts = PersistentTextStreaming(dsn="postgresql://nobody@127.0.0.1:9/nothing")
    monkeypatch.delenv("PTS_CORS_ORIGINS", raising=False)
    assert create_app(pts, no_auth=True).plugins.get(PTSPlugin).cors_origins is None
    assert create_app(pts, no_auth=False).plugins.get(PTSPlugin).cors_origins == "*"
    monkeypatch.setenv("PTS_CORS_ORIGINS", "https://a.example, https://b.example")
    for no_auth in (True, False):
        plugin = create_app(pts, no_auth=no_auth).plugins.get(PTSPlugin)
        assert plugin.cors_origins == frozenset({"https://a.example", "https://b.example"})


async def test_authenticated_deployments_keep_the_protocols_cors(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PTS_CORS_ORIGINS", raising=False)
    app = create_app(
        PersistentTextStreaming(dsn=db_url), authorize=lambda *_: True, cors_origins=None
    )
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        headers = TEXT | {"origin": "https://anywhere.example", "host": "pts.example"}
        put = await client.put("/v1/stream/public", headers=headers)
        assert put.status_code == 201, put.text
        assert put.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost", "localhost"),
        ("localhost:8000", "localhost"),
        ("127.0.0.1:1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::1]:8000", "::1"),
        ("::1", None),  # unbracketed
        ("[::1", None),
        ("[::1]x", None),
        ("[::1]:", None),
        ("localhost:", None),
        ("localhost:80x", None),
        ("", ""),
    ],
)
def test_split_host_header(header: str, host: str | None) -> None:
    assert split_host_header(header) == host


@pytest.mark.parametrize(
    ("origin", "loopback"),
    [
        ("http://localhost", True),
        ("https://127.0.0.1:8443", True),
        ("http://[::1]:3000", True),
        ("null", False),
        ("file://", False),
        ("ftp://localhost", False),
        ("http://localhost/", False),  # a URL, not an origin
        ("http://localhost:99999", False),
        ("http://user@localhost", False),
        ("http://localhost.evil.example", False),
        ("http://127.0.0.1.evil.example", False),
    ],
)
def test_is_loopback_origin(origin: str, loopback: bool) -> None:
    assert is_loopback_origin(origin) is loopback


def test_every_host_and_origin_header_is_checked() -> None:
    guard = LoopbackGuard()
    guard.check([("host", "localhost")])
    with pytest.raises(Forbidden):
        guard.check([])  # no Host at all
    with pytest.raises(Forbidden):
        guard.check([("host", "localhost"), ("host", "evil.example")])
    with pytest.raises(Forbidden):
        guard.check([("host", "localhost"), ("origin", "http://localhost"), ("origin", "null")])

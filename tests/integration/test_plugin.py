"""PTSPlugin over real HTTP: routes, authorization, the app-wide error mapping, lifespan."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from litestar.types import ControllerRouterHandler, HTTPScope

from pts.core import PersistentTextStreaming
from pts.errors import (
    ClientIdTaken,
    ConfigurationError,
    InvalidInput,
    InvalidOffset,
    InvalidTransition,
    OffsetConflict,
    PathTaken,
    PTSError,
    StoreUnavailable,
    StreamClosed,
    StreamNotFound,
)
from pts.http.access import Access, Forbidden, Unauthorized
from pts.http.routes import StreamRoutes
from pts.models import StreamInfo, StreamStatus
from pts.plugin import Action, Authorize, PTSPlugin, allow_everything
from tests.support.servers import serve_app

TOKEN = "s3cret-admin-token"
STREAM_FIELDS = {
    "id",
    "status",
    "text",
    "size",
    "done",
    "abort_reason",
    "error",
    "created_at",
    "updated_at",
    "finished_at",
}


@pytest.fixture
def pts(db_url: str) -> PersistentTextStreaming:
    """A component on this test's database; the plugin opens and closes it."""
    return PersistentTextStreaming(dsn=db_url)


def make_app(
    pts: PersistentTextStreaming,
    authorize: Authorize | None = allow_everything,
    *,
    path: str = "/streams",
    route_handlers: list[ControllerRouterHandler] | None = None,
) -> Litestar:
    return Litestar(
        route_handlers=route_handlers or [],
        plugins=[PTSPlugin(pts, path=path, authorize=authorize)],
    )


@pytest.fixture
async def client(pts: PersistentTextStreaming) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose authorize hook allows everything."""
    async with serve_app(make_app(pts)) as url, httpx.AsyncClient(base_url=url) as c:
        yield c


def assert_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == kind
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


async def create(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/streams", json=body)
    assert response.status_code == 201, response.text
    stream_id: str = response.json()["id"]
    return stream_id


# -- routes ------------------------------------------------------------------------


async def test_create_get_cancel_delete_roundtrip(pts: PersistentTextStreaming) -> None:
    async with serve_app(make_app(pts)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/streams", json={"client_id": "chat-1", "metadata": {"chat": 1}}
        )
        assert response.status_code == 201
        assert set(response.json()) == {"id"}
        stream_id = response.json()["id"]
        assert (await pts.get_stream(uuid.UUID(stream_id))).metadata == {"chat": 1}

        got = await client.get(f"/streams/{stream_id}")
        assert got.status_code == 200
        view = got.json()
        assert set(view) == STREAM_FIELDS
        assert view["id"] == stream_id
        assert view["status"] == "pending"
        assert (view["text"], view["size"], view["done"]) == ("", 0, False)
        assert view["finished_at"] is None
        datetime.fromisoformat(view["created_at"])
        datetime.fromisoformat(view["updated_at"])

        cancelled = await client.post(f"/streams/{stream_id}/cancel", json={"reason": "stop"})
        assert cancelled.status_code == 200
        view = cancelled.json()
        assert set(view) == STREAM_FIELDS
        assert (view["status"], view["abort_reason"], view["done"]) == ("aborted", "stop", True)
        assert datetime.fromisoformat(view["finished_at"]) >= datetime.fromisoformat(
            view["created_at"]
        )
        assert (await client.get(f"/streams/{stream_id}")).json() == view

        deleted = await client.delete(f"/streams/{stream_id}")
        assert deleted.status_code == 204
        assert_error(await client.get(f"/streams/{stream_id}"), 404, "stream_not_found")
    # The app's lifespan closed the component.
    with pytest.raises(RuntimeError, match="not open"):
        _ = pts.store


async def test_create_and_cancel_take_no_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/streams")
    assert response.status_code == 201
    stream_id = response.json()["id"]
    cancelled = await client.post(f"/streams/{stream_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "aborted"
    assert cancelled.json()["abort_reason"] is None


async def test_cancel_of_a_finished_stream_returns_its_state(
    pts: PersistentTextStreaming, client: httpx.AsyncClient
) -> None:
    stream_id = await create(client)
    await pts.store.claim(uuid.UUID(stream_id))
    await pts.store.append(uuid.UUID(stream_id), b"Hello. Bye.", offset=0, finish=StreamStatus.DONE)
    response = await client.post(f"/streams/{stream_id}/cancel", json={"reason": "late"})
    assert response.status_code == 200
    view = response.json()
    assert (view["status"], view["text"], view["size"], view["done"]) == (
        "done",
        "Hello. Bye.",
        11,
        True,
    )
    assert view["abort_reason"] is None
    assert view["finished_at"] is not None


async def test_routes_mount_under_the_given_path(pts: PersistentTextStreaming) -> None:
    app = make_app(pts, path="/api/v1/answers/")
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/api/v1/answers")
        assert response.status_code == 201
        stream_id = response.json()["id"]
        assert (await client.get(f"/api/v1/answers/{stream_id}")).status_code == 200
        assert (await client.get(f"/streams/{stream_id}")).status_code == 404


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/cancel"), ("DELETE", "")])
async def test_malformed_id_is_400(client: httpx.AsyncClient, method: str, suffix: str) -> None:
    response = await client.request(method, f"/streams/not-a-uuid{suffix}")
    body = assert_error(response, 400, "invalid_input")
    assert "not-a-uuid" in body["detail"]


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/cancel"), ("DELETE", "")])
async def test_unknown_id_is_404(client: httpx.AsyncClient, method: str, suffix: str) -> None:
    unknown = uuid.uuid4()
    response = await client.request(method, f"/streams/{unknown}{suffix}")
    body = assert_error(response, 404, "stream_not_found")
    assert str(unknown) in body["detail"]


async def test_duplicate_client_id_is_409(client: httpx.AsyncClient) -> None:
    await create(client, client_id="chat-7")
    response = await client.post("/streams", json={"client_id": "chat-7"})
    body = assert_error(response, 409, "client_id_taken")
    assert "chat-7" in body["detail"]


@pytest.mark.parametrize(
    "content",
    [b'{"client_id": 5}', b'{"metadata": [1, 2]}', b"[1]", b"{not json"],
    ids=["client_id-not-a-string", "metadata-not-an-object", "not-an-object", "malformed"],
)
async def test_invalid_body_is_litestars_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/streams", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status_code"] == 400


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert {"/streams", "/streams/{stream_id}", "/streams/{stream_id}/cancel"} <= set(
        schema["paths"]
    )
    assert set(schema["components"]["schemas"]["StreamView"]["properties"]) == STREAM_FIELDS


# -- authorization -----------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, b"Bearer wrong", f"Basic {TOKEN}".encode(), b"Bearer", "Bearer ünïcode".encode()],
    ids=["none", "wrong-token", "wrong-scheme", "empty", "non-ascii"],
)
async def test_without_hook_or_valid_token_everything_is_401(
    pts: PersistentTextStreaming,
    monkeypatch: pytest.MonkeyPatch,
    authorization: bytes | None,
) -> None:
    monkeypatch.setenv("PTS_ADMIN_TOKEN", TOKEN)
    headers = {} if authorization is None else {b"authorization": authorization}
    async with (
        serve_app(make_app(pts, authorize=None)) as url,
        httpx.AsyncClient(base_url=url, headers=headers) as client,
    ):
        existing = await pts.create_stream()
        for response in [
            await client.post("/streams", json={}),
            await client.get(f"/streams/{existing}"),
            await client.get(f"/streams/{uuid.uuid4()}"),  # no hint whether it exists
            await client.get("/streams/not-a-uuid"),
            await client.post(f"/streams/{existing}/cancel"),
            await client.delete(f"/streams/{existing}"),
        ]:
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await pts.get_stream(existing)).status == StreamStatus.PENDING


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
async def test_without_admin_token_configured_nothing_is_allowed(
    pts: PersistentTextStreaming, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    if token is None:
        monkeypatch.delenv("PTS_ADMIN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("PTS_ADMIN_TOKEN", token)
    async with (
        serve_app(make_app(pts, authorize=None)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        for authorization in ["Bearer", "Bearer None", "Bearer null"]:
            response = await client.post("/streams", headers={"authorization": authorization})
            assert_error(response, 401, "unauthorized")


async def test_admin_token_allows_everything(
    pts: PersistentTextStreaming, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTS_ADMIN_TOKEN", TOKEN)
    app = make_app(pts, authorize=None)  # the token is read here
    monkeypatch.delenv("PTS_ADMIN_TOKEN")
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": f"bearer {TOKEN}"}) as client,
    ):
        stream_id = await create(client, client_id="admin")
        assert (await client.get(f"/streams/{stream_id}")).json()["status"] == "pending"
        cancelled = await client.post(f"/streams/{stream_id}/cancel")
        assert cancelled.json()["status"] == "aborted"
        assert (await client.delete(f"/streams/{stream_id}")).status_code == 204


@pytest.mark.parametrize("hook_kind", ["sync", "async"])
async def test_hook_sees_action_and_stream_and_may_deny(
    pts: PersistentTextStreaming, hook_kind: str
) -> None:
    seen: list[tuple[Action, uuid.UUID | None, str | None]] = []
    allowed: set[Action] = set()

    def decide(request: Request[Any, Any, Any], action: Action, stream: StreamInfo | None) -> bool:
        seen.append((action, None if stream is None else stream.id, request.headers.get("x-user")))
        return action in allowed

    async def decide_async(
        request: Request[Any, Any, Any], action: Action, stream: StreamInfo | None
    ) -> bool:
        return decide(request, action, stream)

    hook: Authorize = decide if hook_kind == "sync" else decide_async
    async with (
        serve_app(make_app(pts, authorize=hook)) as url,
        httpx.AsyncClient(base_url=url, headers={"x-user": "ann"}) as client,
    ):
        assert_error(await client.post("/streams"), 403, "forbidden")
        assert seen == [("create", None, "ann")]
        allowed.add("create")
        stream_id = uuid.UUID(await create(client))

        for action, method, suffix in [
            ("view", "GET", ""),
            ("cancel", "POST", "/cancel"),
            ("delete", "DELETE", ""),
        ]:
            seen.clear()
            response = await client.request(method, f"/streams/{stream_id}{suffix}")
            assert_error(response, 403, "forbidden")
            assert seen == [(action, stream_id, "ann")]
        assert (await pts.get_stream(stream_id)).status == StreamStatus.PENDING

        allowed.update({"view", "cancel", "delete"})
        seen.clear()
        assert (await client.get(f"/streams/{stream_id}")).status_code == 200
        assert (await client.post(f"/streams/{stream_id}/cancel")).status_code == 200
        assert (await client.delete(f"/streams/{stream_id}")).status_code == 204
        assert seen == [
            ("view", stream_id, "ann"),
            ("cancel", stream_id, "ann"),
            ("delete", stream_id, "ann"),
        ]


async def test_hook_must_return_true_to_allow(pts: PersistentTextStreaming) -> None:
    def truthy(request: Request[Any, Any, Any], action: Action, stream: StreamInfo | None) -> Any:
        return "yes"

    async with (
        serve_app(make_app(pts, authorize=truthy)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        assert_error(await client.post("/streams"), 403, "forbidden")


# -- the app-wide error mapping and the dependency -----------------------------------


@get("/own/{stream_id:uuid}")
async def own_status(
    pts: NamedDependency[PersistentTextStreaming], stream_id: FromPath[uuid.UUID]
) -> dict[str, str]:
    """An app's own handler: uses the injected component, lets pts errors through."""
    info = await pts.get_stream(stream_id)
    return {"status": str(info.status)}


SOME_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
SECRET = "host=db password=hunter2"
RAISED: dict[str, PTSError] = {
    "not-found": StreamNotFound(SOME_ID),
    "invalid-input": InvalidInput("bad input"),
    "invalid-offset": InvalidOffset(SOME_ID, 9, 3),
    "client-id": ClientIdTaken("c"),
    "path": PathTaken("/p"),
    "offset": OffsetConflict(SOME_ID, 0, 4),
    "closed": StreamClosed(SOME_ID, "done"),
    "transition": InvalidTransition(SOME_ID, StreamStatus.DONE, StreamStatus.STREAMING, 12),
    "unavailable": StoreUnavailable("cannot connect to the database"),
    "configuration": ConfigurationError(f"bad DSN {SECRET}"),
    "other": PTSError("something else"),
}


@get("/raise/{name:str}")
async def raise_error(name: FromPath[str]) -> None:
    raise RAISED[name]


async def test_own_handler_gets_pts_injected_and_errors_mapped(
    pts: PersistentTextStreaming,
) -> None:
    app = make_app(pts, route_handlers=[own_status])
    async with AsyncTestClient(app) as client:
        stream_id = await create(client)
        response = await client.get(f"/own/{stream_id}")
        assert response.status_code == 200
        assert response.json() == {"status": "pending"}
        assert_error(await client.get(f"/own/{uuid.uuid4()}"), 404, "stream_not_found")


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        ("not-found", 404, "stream_not_found"),
        ("invalid-input", 400, "invalid_input"),
        ("invalid-offset", 400, "invalid_offset"),
        ("client-id", 409, "client_id_taken"),
        ("path", 409, "path_taken"),
        ("offset", 409, "offset_conflict"),
        ("closed", 409, "stream_closed"),
        ("transition", 409, "invalid_transition"),
        ("unavailable", 503, "store_unavailable"),
        ("configuration", 500, "configuration_error"),
        ("other", 500, "internal_error"),
    ],
)
async def test_every_pts_error_is_mapped_app_wide(
    pts: PersistentTextStreaming, name: str, status: int, kind: str
) -> None:
    app = make_app(pts, route_handlers=[raise_error])
    async with AsyncTestClient(app) as client:
        body = assert_error(await client.get(f"/raise/{name}"), status, kind)
    if status < 500:
        assert body["detail"] == str(RAISED[name])
    else:
        assert SECRET not in body["detail"]
    if name == "transition":
        assert (body["status"], body["size"]) == ("done", 12)
    else:
        assert set(body) == {"error", "detail"}


async def test_configuration_error_detail_is_shown_in_debug(pts: PersistentTextStreaming) -> None:
    app = Litestar(
        route_handlers=[raise_error],
        plugins=[PTSPlugin(pts, authorize=allow_everything)],
        debug=True,
    )
    async with AsyncTestClient(app) as client:
        body = assert_error(await client.get("/raise/configuration"), 500, "configuration_error")
    assert SECRET in body["detail"]


async def test_stream_routes_stream_for_is_the_seam_for_an_apps_own_routes(
    pts: PersistentTextStreaming,
) -> None:
    """``StreamRoutes.stream_for``: access first, then the id, then the stream."""
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    request: Request[Any, Any, Any] = Request(cast("HTTPScope", scope))
    seen: list[tuple[Action, uuid.UUID | None]] = []

    def only_views(_: object, action: Action, stream: StreamInfo | None) -> bool:
        seen.append((action, None if stream is None else stream.id))
        return action == "view"

    anonymous = StreamRoutes(pts, Access(None))
    # Refused before the id is parsed or the stream looked up (pts is not even open).
    with pytest.raises(Unauthorized):
        await anonymous.stream_for(request, "view", "not-a-uuid")
    hooked = StreamRoutes(pts, Access(only_views))
    with pytest.raises(InvalidInput):
        await hooked.stream_for(request, "view", "not-a-uuid")
    await pts.open()
    try:
        stream_id = await pts.create_stream()
        stream = await hooked.stream_for(request, "view", str(stream_id))
        assert stream.id == stream_id
        with pytest.raises(Forbidden):
            await hooked.stream_for(request, "delete", str(stream_id))
        with pytest.raises(StreamNotFound):
            await hooked.stream_for(request, "view", str(uuid.uuid4()))
    finally:
        await pts.close()
    assert seen == [("view", stream_id), ("delete", stream_id)]

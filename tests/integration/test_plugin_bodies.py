"""The plugin's JSON bodies (create, cancel): access before the body, bounded, shallow.

Litestar decodes a handler's ``data`` before the handler runs; the plugin checks
access in guards so that an anonymous or forbidden caller costs no body read,
and refuses bodies too deep for a recursive decoder with a 400 (issue 10,
findings 1 and 8).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar import Request

from pts import PersistentTextStreaming
from pts.http.json_body import MAX_JSON_BODY_BYTES, MAX_JSON_BODY_DEPTH, nests_deeper_than
from pts.models import StreamInfo
from pts.plugin import Action
from tests.integration.test_durable import make_app
from tests.integration.test_durable import pts as pts  # the fixture
from tests.integration.test_durable_hardening import asgi
from tests.support.servers import serve_app

JSON = (b"content-type", b"application/json")


async def test_an_anonymous_create_or_cancel_is_refused_before_its_body_is_read(
    pts: PersistentTextStreaming, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTS_ADMIN_TOKEN", "tok")
    app = make_app(pts, authorize=None)
    async with serve_app(app):
        stream_id = await pts.create_stream()
        for path in (b"/streams", f"/streams/{stream_id}/cancel".encode()):
            answer = await asgi(app, "POST", path, [JSON], endless=True)
            assert answer.status == 401, (path, answer.body)
            assert answer.body_reads == 0, path
            # Deep JSON from a stranger is a 401 too, not a parse error or a 500.
            deep = b"[" * 5000 + b"]" * 5000
            answer = await asgi(app, "POST", path, [JSON, (b"authorization", b"Bearer no")], [deep])
            assert answer.status == 401, (path, answer.body)
        # The admin's bodies still arrive whole (the guard's read is the one the handler sees).
        admin = [JSON, (b"authorization", b"Bearer tok")]
        created = await asgi(app, "POST", b"/streams", admin, [b'{"client_id":', b'"c-1"}'])
        assert created.status == 201, created.body
        assert (await pts.get_stream(uuid.UUID(created.json()["id"]))).client_id == "c-1"
        path = f"/streams/{stream_id}/cancel".encode()
        cancelled = await asgi(app, "POST", path, admin, [b'{"reason": "enough"}'])
        assert cancelled.status == 200, cancelled.body
        assert cancelled.json()["abort_reason"] == "enough"


async def test_a_hook_judges_before_the_body_is_read(pts: PersistentTextStreaming) -> None:
    asked: list[tuple[Action, uuid.UUID | None]] = []

    def authorize(
        request: Request[Any, Any, Any], action: Action, stream: StreamInfo | None
    ) -> bool:
        asked.append((action, None if stream is None else stream.id))
        return request.headers.get("x-user") == "ann"

    app = make_app(pts, authorize)
    bob = [JSON, (b"x-user", b"bob")]
    async with serve_app(app):
        stream_id = await pts.create_stream()
        answer = await asgi(app, "POST", b"/streams", bob, endless=True)
        assert (answer.status, answer.body_reads) == (403, 0)
        assert asked.pop() == ("create", None)
        path = f"/streams/{stream_id}/cancel".encode()
        answer = await asgi(app, "POST", path, bob, endless=True)
        assert (answer.status, answer.body_reads) == (403, 0)
        assert asked.pop() == ("cancel", stream_id)
        missing = f"/streams/{uuid.uuid4()}/cancel".encode()
        answer = await asgi(app, "POST", missing, bob, endless=True)
        assert (answer.status, answer.body_reads) == (404, 0)
        assert (await pts.get_stream(stream_id)).status == "pending"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"metadata": '
        + b"[" * (MAX_JSON_BODY_DEPTH + 1)
        + b"]" * (MAX_JSON_BODY_DEPTH + 1)
        + b"}",
    ],
    ids=["arrays", "objects", "just-too-deep"],
)
async def test_deep_json_bodies_are_400(pts: PersistentTextStreaming, body: bytes) -> None:
    app = make_app(pts)
    async with serve_app(app):
        stream_id = await pts.create_stream()
        for path in (b"/streams", f"/streams/{stream_id}/cancel".encode()):
            answer = await asgi(app, "POST", path, [JSON], [body])
            assert answer.status == 400, (path, answer.body)
            assert answer.json()["error"] == "invalid_input"
        assert (await pts.get_stream(stream_id)).status == "pending"


async def test_a_body_over_the_limit_is_413(pts: PersistentTextStreaming) -> None:
    app = make_app(pts)
    async with serve_app(app):
        big = b'{"metadata": {"a": "' + b"x" * MAX_JSON_BODY_BYTES + b'"}}'
        answer = await asgi(app, "POST", b"/streams", [JSON], [big])
        assert answer.status == 413, answer.body


def test_nesting_is_counted_outside_strings_only() -> None:
    assert not nests_deeper_than(b'{"a": "[[[[[[[[[[[["}', 3)
    assert not nests_deeper_than(b'["\\"[[[[[[[[", [[1]]]', 3)
    assert nests_deeper_than(b"[[[[1]]]]", 3)
    assert not nests_deeper_than(b"[[[1]]][[[2]]][[[3]]]", 3)
    assert not nests_deeper_than(b"", 0)

"""Helpers for the demo chat's tests: a controllable model, the app on a real socket,
browser-like HTTP clients, and a fake OpenAI-compatible server.

Every wait here is a hang guard, never an assertion about speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from litestar import Litestar, Request, post
from litestar.response import Stream

from example_chat import db as demo_db
from example_chat.app import create_app
from example_chat.db import Turn
from example_chat.models import ChatModel, compose_answer, tokenize
from pts import PersistentTextStreaming
from tests.support.servers import serve_app

GUARD = 20.0
"""Seconds any single wait may take before a test is declared hung."""

SECRET = "demo-test-secret-" + "0" * 47


class ScriptedModel:
    """A fast offline model for tests that can hold an answer mid-way.

    Streams the demo model's kind of answer (or ``text``) at ``tokens_per_second``.
    With ``hold_at=N`` it stops before token N until :meth:`release`; ``held``
    is set when it gets there. ``calls`` counts generations. ``chunk_chars``
    joins tokens into chunks of about that many characters (a fast model).
    """

    def __init__(
        self,
        text: str | None = None,
        *,
        tokens_per_second: float = 400.0,
        hold_at: int | None = None,
        seed: int = 7,
        chunk_chars: int = 0,
    ) -> None:
        self.text = text
        self.gap = 1.0 / tokens_per_second
        self.hold_at = hold_at
        self.calls = 0
        self.turns: list[list[Turn]] = []
        self.answers: list[str] = []
        self.emitted = ""
        """The text of the latest answer yielded so far."""
        self.chunk_chars = chunk_chars
        self.held = asyncio.Event()
        self._gate = asyncio.Event()
        self._rng = random.Random(seed)

    @property
    def name(self) -> str:
        return "scripted (tests)"

    def release(self) -> None:
        """Let a held answer continue."""
        self._gate.set()

    async def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[str, None]:
        self.calls += 1
        self.turns.append(list(turns))
        text = self.text if self.text is not None else compose_answer(turns, self._rng)
        self.answers.append(text)
        self.emitted = ""
        for index, token in enumerate(self.tokens(text)):
            if index == self.hold_at:
                self.held.set()
                await asyncio.wait_for(self._gate.wait(), 50)
            self.emitted += token
            yield token
            await asyncio.sleep(self.gap)

    def tokens(self, text: str) -> list[str]:
        """The pieces the model sends ``text`` in."""
        tokens = tokenize(text)
        if not self.chunk_chars:
            return tokens
        chunks: list[str] = []
        for token in tokens:
            if chunks and len(chunks[-1]) < self.chunk_chars:
                chunks[-1] += token
            else:
                chunks.append(token)
        return chunks

    async def aclose(self) -> None:
        pass


@dataclass
class Demo:
    """A demo app served on 127.0.0.1: its ``url``, database and model."""

    url: str
    dsn: str
    model: ChatModel
    pts: PersistentTextStreaming

    def chat_streams(self, chat_id: str) -> list[tuple[uuid.UUID, str]]:
        """(stream id, status) of every answer of a chat, straight from the database."""
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute(
                "SELECT s.id, s.status FROM pts_demo.messages m "
                "JOIN pts.streams s ON s.id = m.stream_id "
                "WHERE m.chat_id = %s ORDER BY m.id",
                (chat_id,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    async def body(self, stream_id: uuid.UUID) -> str:
        """An answer's persisted text."""
        return (await self.pts.get_stream_body(stream_id)).text


UNCLAIMED_AFTER = 30.0
"""Tests that drive answers from a client leave them to that client this long."""


@contextlib.asynccontextmanager
async def run_demo(
    dsn: str, model: ChatModel, *, unclaimed_after: float = UNCLAIMED_AFTER
) -> AsyncIterator[Demo]:
    """The demo app on ``dsn`` (its migration applied here), served in this event loop.

    The server drives an answer no client claimed within ``unclaimed_after``
    seconds (long by default, so that tests which drive answers themselves
    are not raced by it).
    """
    await demo_db.migrate(dsn)
    pts = PersistentTextStreaming(dsn=dsn, stale_after=120, sweep_interval=60)
    app = create_app(dsn=dsn, secret=SECRET, model=model, pts=pts, unclaimed_after=unclaimed_after)
    async with serve_app(app) as url:
        yield Demo(url=url, dsn=dsn, model=model, pts=pts)


_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


def csrf_token_of(page: str) -> str:
    """The CSRF token a page hands its scripts (its ``<meta name="csrf-token">``)."""
    found = _CSRF_META.search(page)
    assert found, "no CSRF token in the page"
    assert found.group(1), "an empty CSRF token"
    return found.group(1)


class Browser:
    """An HTTP client that behaves like one browser: its cookies, its CSRF token."""

    def __init__(self, base_url: str, *, cookies: httpx.Cookies | None = None) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=GUARD, follow_redirects=False, cookies=cookies
        )
        self.token = ""

    async def __aenter__(self) -> Browser:
        response = await self.client.get("/")  # receives the session cookie
        assert response.status_code == 200, response.text
        self.token = csrf_token_of(response.text)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.aclose()

    @property
    def csrf(self) -> dict[str, str]:
        return {"x-csrftoken": self.token}

    async def new_chat(self) -> str:
        response = await self.client.post("/chats", headers=self.csrf)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith("/chats/")
        return location.removeprefix("/chats/")

    async def send(self, chat_id: str, content: str, *, htmx: bool = True) -> httpx.Response:
        headers = {**self.csrf, **({"hx-request": "true"} if htmx else {})}
        return await self.client.post(
            f"/chats/{chat_id}/messages", data={"content": content}, headers=headers
        )

    async def latest_stream(self, chat_id: str, demo: Demo) -> uuid.UUID:
        return demo.chat_streams(chat_id)[-1][0]

    async def drive(self, chat_id: str, stream_id: uuid.UUID) -> httpx.Response:
        """POST the HTTP action and read the whole streamed body."""
        return await self.client.post(
            f"/chats/{chat_id}/answers/{stream_id}/stream", headers=self.csrf
        )


async def wait_persisted(demo: Demo, stream_id: uuid.UUID, text: str) -> None:
    """Until the stream's persisted text is ``text`` (e.g. all a held model has said)."""
    async with asyncio.timeout(GUARD):
        while await demo.body(stream_id) != text:
            await asyncio.sleep(0.02)


async def wait_finished(demo: Demo, stream_id: uuid.UUID) -> str:
    """The stream's final status, once it has one."""
    async with asyncio.timeout(GUARD):
        while not (info := await demo.pts.get_stream(stream_id)).finished:
            await asyncio.sleep(0.02)
    return str(info.status)


# -- a fake OpenAI-compatible server ---------------------------------------------------


@dataclass
class FakeOpenAI:
    """Speaks ``POST /v1/chat/completions`` with ``stream: true`` as OpenAI does (SSE).

    It streams ``deltas`` as content, then ``finish_reason: "stop"``; or, with
    ``scripts``, request N streams ``scripts[N]`` (the last one again past the
    end): each item a choice's ``delta`` and ``finish_reason``, as given.
    """

    deltas: list[str]
    status_code: int = 200
    scripts: list[list[dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Litestar:
        fake = self

        @post("/v1/chat/completions", status_code=200)
        async def completions(request: Request[Any, Any, Any]) -> Stream:
            body = await request.json()
            fake.requests.append(body)
            fake.headers.append(dict(request.headers))
            if fake.status_code != 200:
                error = {"error": {"message": "bad request", "type": "invalid_request_error"}}
                return Stream(
                    [json.dumps(error).encode()],
                    status_code=fake.status_code,
                    media_type="application/json",
                )
            if fake.scripts:
                script = fake.scripts[min(len(fake.requests), len(fake.scripts)) - 1]
                return Stream(fake._scripted(body["model"], script), media_type="text/event-stream")
            return Stream(fake._events(body["model"]), media_type="text/event-stream")

        return Litestar([completions])

    @staticmethod
    def _base(model: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
        }

    async def _scripted(self, model: str, script: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        for choice in script:
            chunk = {
                **self._base(model),
                "choices": [{"index": 0, "finish_reason": None, **choice}],
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(0.001)
        yield b"data: [DONE]\n\n"

    async def _events(self, model: str) -> AsyncIterator[bytes]:
        base = self._base(model)
        first = {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
        yield f"data: {json.dumps(first)}\n\n".encode()
        for delta in self.deltas:
            chunk = {
                **base,
                "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(0.001)
        last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(last)}\n\n".encode()
        yield b"data: [DONE]\n\n"


@contextlib.asynccontextmanager
async def serve_fake_openai(fake: FakeOpenAI) -> AsyncIterator[str]:
    """Serve ``fake``; yield its API root (``http://127.0.0.1:PORT/v1``)."""
    async with serve_app(fake.app()) as url:
        yield f"{url}/v1"

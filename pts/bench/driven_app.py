"""The server of ``pts bench driven``: an app factory for uvicorn (bare, pts and naive answers)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeAlias

from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from pts import Append, PersistentTextStreaming, PTSPlugin, Settings, StreamStatus
from pts.bench.config import MAX_PACE, MAX_TOKENS, answer_tokens
from pts.bench.driven_ui import UI_HEADERS, bare_ui_events
from pts.http.app import gc_startup_hooks
from pts.ui import UIWriter

__all__ = ["APP_FACTORY", "create_bench_app"]

APP_FACTORY = "pts.bench.driven_app:create_bench_app"

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

TokensParam: TypeAlias = Annotated[int, QueryParameter(ge=1, le=MAX_TOKENS)]
SentencesParam: TypeAlias = Annotated[int, QueryParameter(ge=1, le=MAX_TOKENS)]
PaceParam: TypeAlias = Annotated[float, QueryParameter(ge=0, le=MAX_PACE)]
AnyRequest: TypeAlias = Request[Any, Any, Any]


def _deny(*_args: object) -> bool:
    return False


def create_bench_app() -> Litestar:
    """The benchmark server (an app factory for uvicorn).

    Reads ``PTS_DATABASE_URL`` / ``DATABASE_URL`` (else the embedded Postgres)
    and ``PTS_DRIVER`` like ``pts serve``; the default :class:`FlushPolicy`.
    Routes (``tokens`` and ``sentences`` are query parameters, default 1000 and 40):

    - ``POST /bench/bare``: the answer through a bare ``Stream`` (no database);
    - ``POST /bench/pts/{id}``: the answer through ``pts.stream()`` on pending stream ``id``;
      with ``pace`` > 0 (seconds) the generator sleeps that long between tokens;
    - ``POST /bench/ui-bare``: the answer as UI message chunks (a ``text-delta`` per
      token) in a bare SSE ``Stream``;
    - ``POST /bench/ui/{id}``: the answer through ``pts.stream_ui()`` on pending
      ``application/json`` stream ``id`` (``pace`` as above);
    - ``POST /bench/naive/{id}``: claim, then one awaited ``store.append`` per token
      before the token is sent (the last append finishes the stream);
    - ``GET /healthz``.

    The plugin's own ``/streams`` routes refuse everyone: the bench needs none.
    """
    pts = PersistentTextStreaming(driver=Settings.from_env().driver)

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, bool]:
        """Up once the lifespan (which opens the pool) completed."""
        return {"ok": True}

    @post("/bench/bare", status_code=200)
    async def bare(tokens: TokensParam = 1000, sentences: SentencesParam = 40) -> Stream:
        """The answer through a bare Litestar streaming response."""
        words = answer_tokens(tokens, min(sentences, tokens))

        async def body() -> AsyncIterator[bytes]:
            for token in words:
                yield token.encode()

        return Stream(body(), media_type="text/plain", headers=_STREAM_HEADERS)

    @post("/bench/pts/{stream_id:uuid}", status_code=200)
    async def drive(
        request: AnyRequest,
        stream_id: FromPath[uuid.UUID],
        tokens: TokensParam = 1000,
        sentences: SentencesParam = 40,
        pace: PaceParam = 0.0,
    ) -> Stream:
        """The answer through ``pts.stream()``, ``pace`` seconds between tokens."""
        words = answer_tokens(tokens, min(sentences, tokens))

        async def generate(_request: AnyRequest, _stream_id: uuid.UUID, append: Append) -> None:
            if not pace:
                for token in words:
                    await append(token)
                return
            for i, token in enumerate(words):
                if i:
                    await asyncio.sleep(pace)
                await append(token)

        return await pts.stream(request, stream_id, generate)

    @post("/bench/ui-bare", status_code=200)
    async def ui_bare(tokens: TokensParam = 1000, sentences: SentencesParam = 40) -> Stream:
        """The answer as UI message chunks, through a bare Litestar SSE response."""
        words = answer_tokens(tokens, min(sentences, tokens))

        async def body() -> AsyncIterator[bytes]:
            # An async generator, as the bare text answer: Litestar runs each step
            # of a sync iterator in a worker thread.
            for event in bare_ui_events(words):
                yield event

        return Stream(body(), media_type="text/event-stream", headers=UI_HEADERS)

    @post("/bench/ui/{stream_id:uuid}", status_code=200)
    async def drive_ui(
        request: AnyRequest,
        stream_id: FromPath[uuid.UUID],
        tokens: TokensParam = 1000,
        sentences: SentencesParam = 40,
        pace: PaceParam = 0.0,
    ) -> Response[Any]:
        """The answer through ``pts.stream_ui()`` (a ``ui.text`` per token) on pending
        ``application/json`` stream ``id``, ``pace`` seconds between tokens."""
        words = answer_tokens(tokens, min(sentences, tokens))

        async def generate(_request: AnyRequest, _stream_id: uuid.UUID, ui: UIWriter) -> None:
            for i, token in enumerate(words):
                if pace and i:
                    await asyncio.sleep(pace)
                await ui.text(token)

        return await pts.stream_ui(request, stream_id, generate)

    @post("/bench/naive/{stream_id:uuid}", status_code=200)
    async def naive(
        stream_id: FromPath[uuid.UUID],
        tokens: TokensParam = 1000,
        sentences: SentencesParam = 40,
    ) -> Stream:
        """The answer with one awaited database write per token."""
        words = answer_tokens(tokens, min(sentences, tokens))
        store = pts.store
        info = await store.claim(stream_id)

        async def body() -> AsyncIterator[bytes]:
            offset = info.size
            last = len(words) - 1
            for i, token in enumerate(words):
                data = token.encode()
                finish = StreamStatus.DONE if i == last else None
                offset = await store.append(stream_id, data, offset=offset, finish=finish)
                yield data

        return Stream(body(), media_type="text/plain", headers=_STREAM_HEADERS)

    return Litestar(
        route_handlers=[healthz, bare, drive, ui_bare, drive_ui, naive],
        plugins=[PTSPlugin(pts, authorize=_deny)],
        # as `pts serve` does (pts.http.app.create_app)
        on_startup=gc_startup_hooks(),
    )

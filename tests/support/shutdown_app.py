"""An app with endless answers, served by :func:`pts.http.shutdown.run` in a subprocess.

``python -m tests.support.shutdown_app PORT`` serves it on 127.0.0.1:PORT (the
database from ``PTS_DATABASE_URL``), as ``pts serve`` serves its app:

- ``POST /drive/{id}``: drives stream ``id`` (the plugin's ``POST /streams``
  creates it), a token every few milliseconds, forever;
- ``POST /background``: starts an answer no request holds (a writer in a task,
  as the demo's server-driven answers are) and returns its stream id;
- ``POST /answer/{id}``: drives stream ``id`` with :data:`ANSWER`, a token every
  :data:`TOKEN_GAP` seconds (a few seconds long), printing ``generation ID`` when
  its generation starts (the test counts generations).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.response import Stream

from pts import Append
from pts.core import PersistentTextStreaming
from pts.errors import StreamClosed
from pts.http.shutdown import run
from pts.models import StreamStatus
from pts.plugin import PTSPlugin, allow_everything

TOKEN_GAP = 0.02
"""Seconds between two tokens of an endless answer."""


ANSWER = "".join(f"Sentence {i} of the answer that outlives a deploy. " for i in range(20))
"""A finite answer: 160 tokens, TOKEN_GAP apart."""


async def finite(_request: Request[Any, Any, Any], stream_id: uuid.UUID, append: Append) -> None:
    print(f"generation {stream_id}", flush=True)
    for word in ANSWER.split(" ")[:-1]:
        await append(word + " ")
        await asyncio.sleep(TOKEN_GAP)


async def endless(_request: Request[Any, Any, Any], _stream_id: uuid.UUID, append: Append) -> None:
    """A generation that never ends by itself: one sentence after another."""
    while True:
        for word in ("An ", "endless ", "answer. "):
            await append(word)
            await asyncio.sleep(TOKEN_GAP)


def create_app() -> Litestar:
    pts = PersistentTextStreaming(sweeper=False)
    background: set[asyncio.Task[None]] = set()

    @post("/drive/{stream_id:uuid}")
    async def drive(request: Request[Any, Any, Any], stream_id: uuid.UUID) -> Stream:
        return await pts.stream(request, stream_id, endless)

    @post("/answer/{stream_id:uuid}")
    async def answer(request: Request[Any, Any, Any], stream_id: uuid.UUID) -> Stream:
        return await pts.stream(request, stream_id, finite)

    @post("/background")
    async def start_background() -> dict[str, str]:
        writer = await pts.create_write_stream()

        async def write() -> None:
            with contextlib.suppress(StreamClosed):
                while True:
                    await writer.write("In the background. ")
                    await asyncio.sleep(TOKEN_GAP)

        task = asyncio.create_task(write())

        # The server's stop ends the stream and tells its owner: stop writing.
        def stop(_status: StreamStatus) -> None:
            task.cancel()

        writer.on_remote_close = stop
        background.add(task)
        task.add_done_callback(background.discard)
        return {"id": str(writer.stream_id)}

    @get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return Litestar(
        route_handlers=[drive, answer, start_background, healthz],
        plugins=[PTSPlugin(pts, authorize=allow_everything)],
    )


if __name__ == "__main__":
    run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")

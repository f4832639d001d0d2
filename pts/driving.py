"""Driving a stream: the HTTP response that streams every token to the driving browser.

A *driven* stream has one writer in one process. Its text goes two ways at
once: straight to the driving client (every token, at once) and through a
:class:`~pts.writing.StreamWriter` to Postgres (sentence by sentence). Delivery
never waits for the database. :class:`Drives` is what the process knows of
the generations it runs (for cancel, shutdown and stats).

Formerly ``pts.driver`` (still importable, for compatibility): "driver" also
names the database driver (asyncpg, psycopg), so the stream side is "driving".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

from litestar import Request
from litestar.exceptions import InternalServerException
from litestar.response import Stream
from litestar.response.base import ASGIResponse

from pts.errors import PersistenceFailed, PTSError, StreamClosed, StreamTooLarge
from pts.flush import FlushBuffer
from pts.models import StreamInfo, StreamStatus
from pts.store import validate
from pts.writing import StreamWriter, WriterOwner, encode_text

__all__ = [
    "SHUTDOWN_MESSAGE",
    "YIELD_INTERVAL",
    "AnyRequest",
    "Append",
    "Closing",
    "Drive",
    "Drives",
    "Generate",
    "StreamWriter",  # lives in pts.writing; importable from here as before
    "TextStream",
    "driving_response",
    "keep_body",
]

logger = logging.getLogger("pts.driver")  # the name operators filter on, from before

Append: TypeAlias = Callable[[str], Awaitable[None]]
"""``await append(text)``: hand one token (any amount of text) to pts."""

AnyRequest: TypeAlias = "Request[Any, Any, Any]"

Generate: TypeAlias = Callable[[AnyRequest, uuid.UUID, Append], Awaitable[None]]
"""``async def generate(request, stream_id, append)``: the app's generation, e.g. an LLM call."""

Closing: TypeAlias = Callable[[StreamStatus, "str | None"], None]
"""``closing(status, reason)``: a drive's last words once generation ended, before
the response ends and the final write (a UI stream's ``finish``, ``error`` or ``abort``)."""

SHUTDOWN_MESSAGE = "the server shut down during generation"

YIELD_INTERVAL = 0.0005
"""A generator that never awaits yields after running this long (seconds).

A real model awaits its network for every token, and the response sends each
token then; a CPU-bound generator would otherwise starve the response. Yielding
on every token instead costs a full event-loop iteration per token."""


class _End:
    """Marks the end of the driving response; carries the error that cut it off, if any."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Drive:
    """One generation: runs ``generate`` in its own task and feeds both paths.

    The task outlives the HTTP request: if the driving client disconnects,
    generation goes on and is persisted to the end.
    """

    def __init__(
        self,
        pts: WriterOwner,
        request: AnyRequest,
        info: StreamInfo,
        generate: Generate,
        *,
        buffer: FlushBuffer | None = None,
        closing: Closing | None = None,
        cut_off: bool = True,
    ) -> None:
        self.writer = StreamWriter(pts, info, buffer=buffer)
        self._closing = closing
        self._cut_off = cut_off
        self._store = pts.store
        self.writer.on_remote_close = self._on_remote_close
        self.writer.on_failure = self._on_persistence_failure
        self._request = request
        self._generate = generate
        # Tokens not yet handed to the response, and the response's wait for more.
        self._pending: list[bytes] = []
        self._detached = False  # the driving client went away: stop buffering for it
        self._end: _End | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._resumed = -YIELD_INTERVAL  # the first token yields at once
        self._cancel_status: tuple[StreamStatus, str | None] | None = None
        self._generating = True  # cancelling after this would cut the final write short
        self.too_large: StreamTooLarge | None = None
        """Set once a write passed the size cap: the stream ends ``error`` whatever follows."""
        self.task = asyncio.create_task(self._run(), name=f"pts-drive-{info.id}")

    @property
    def stream_id(self) -> uuid.UUID:
        return self.writer.stream_id

    @property
    def detached(self) -> bool:
        """The driving client is gone (or its response over): generation goes on alone."""
        return self._detached

    async def append(self, text: str) -> None:
        """The ``append`` handed to ``generate``: deliver now, persist beside."""
        if not text:
            return
        if self.too_large is not None:
            raise self.too_large
        data = encode_text(text)
        try:
            self.writer.write_nowait(text, len(data))  # raises StreamClosed once finished
        except StreamTooLarge as exc:
            # The stream ends 'error' whatever the generator does with this.
            self.too_large = exc
            raise
        self.deliver(data)
        await self.pace()

    def deliver(self, data: bytes) -> None:
        """Hand ``data`` to the driving response (while its client reads) and wake it."""
        if not self._detached:
            self._pending.append(data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def pace(self) -> None:
        """Let the response (and the flusher) run, after a delivery.

        At once for the first token, then after every YIELD_INTERVAL this
        generator ran without awaiting (measured from when it resumed, so other
        tasks' time does not count).
        """
        if self._loop.time() - self._resumed >= YIELD_INTERVAL:
            await asyncio.sleep(0)
            self._resumed = self._loop.time()

    def cancel(self, status: StreamStatus, reason: str | None) -> None:
        """Stop the generation; the stream ends with ``status`` and ``reason``."""
        if self._cancel_status is None:
            self._cancel_status = (status, reason)
        if self._generating:
            self.task.cancel()

    async def body(self) -> AsyncIterator[bytes]:
        """The driving response body: every token as soon as it exists."""
        try:
            async for chunk in self._chunks():
                yield chunk
        finally:
            # The response is over (or the client disconnected): generation goes on.
            self._detached = True
            self._pending.clear()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._pending:
                # Whatever arrived since the last write goes out in one write.
                parts, self._pending = self._pending, []
                yield parts[0] if len(parts) == 1 else b"".join(parts)
                continue
            end = self._end
            if end is not None:
                if end.error is not None:
                    # Cut the response off (no final chunk) so the client knows
                    # the answer is incomplete.
                    raise end.error
                return
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _finish_response(self, end: _End) -> None:
        self._end = end
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _run(self) -> None:
        status, reason = StreamStatus.DONE, None
        try:
            await self._generate(self._request, self.stream_id, self.append)
        except asyncio.CancelledError:
            status, reason = self._cancel_status or (StreamStatus.ERROR, SHUTDOWN_MESSAGE)
        except StreamClosed:
            status = self.writer.closed_status or StreamStatus.ABORTED
        except Exception as exc:  # noqa: BLE001 - the app's generator failed: record it
            logger.info("stream %s: generator raised %r", self.stream_id, exc)
            status, reason = StreamStatus.ERROR, str(exc) or type(exc).__name__
        self._generating = False
        if self.too_large is not None:
            status, reason = StreamStatus.ERROR, str(self.too_large)
        if reason is not None:
            # Our own message (from an exception, say): make it storable.
            reason = validate.clean_message(reason)
        if self._closing is not None:
            # Last words (a UI stream's `finish` or `error`), to the client and the buffer.
            try:
                self._closing(status, reason)
            except Exception:  # a bug there must not leave the stream streaming
                logger.exception("stream %s: the drive's last words failed", self.stream_id)
        # The driving client has every token already: end its response now,
        # before the final write, so delivery never waits for the database.
        # A response whose text is incomplete is cut off, so the client knows.
        failure = self.writer.flusher.failure
        cut = self.too_large or (
            failure if isinstance(failure, PersistenceFailed | StreamTooLarge) else None
        )
        if not self._cut_off:
            cut = None
        self._finish_response(_End(cut))
        if self.writer.closed_status is not None:
            return  # finished elsewhere (cancel from another process, the sweeper)
        try:
            await self.writer.finish(status, reason)
        except StreamClosed:
            pass
        except (PersistenceFailed, StreamTooLarge) as exc:
            await self._record_failure(exc)

    def _on_remote_close(self, status: StreamStatus) -> None:
        self.cancel(status, None)

    def _on_persistence_failure(self, exc: BaseException) -> None:
        self.cancel(StreamStatus.ERROR, str(exc))

    async def _record_failure(self, exc: PTSError) -> None:
        # The database may be back by now; if not, the sweeper marks the
        # stream 'timeout' once it is (its heartbeat has stopped).
        try:
            await self._store.set_status(self.stream_id, StreamStatus.ERROR, reason=str(exc))
        except Exception as err:  # noqa: BLE001 - best effort
            logger.warning("stream %s: could not record the failure: %s", self.stream_id, err)


class Drives:
    """The generations running in this process, by stream."""

    def __init__(self) -> None:
        self._drives: dict[uuid.UUID, Drive] = {}

    def __len__(self) -> int:
        return len(self._drives)

    def get(self, stream_id: uuid.UUID) -> Drive | None:
        """The generation of ``stream_id`` running here, if any."""
        return self._drives.get(stream_id)

    def all(self) -> list[Drive]:
        """The running generations, as a list (safe to iterate while they end)."""
        return list(self._drives.values())

    @property
    def attached(self) -> int:
        """How many still have their driving client reading the response."""
        return sum(1 for drive in self._drives.values() if not drive.detached)

    def start(
        self,
        owner: WriterOwner,
        request: AnyRequest,
        info: StreamInfo,
        generate: Generate,
        *,
        buffer: FlushBuffer | None = None,
        closing: Closing | None = None,
        cut_off: bool = True,
    ) -> Drive:
        """Run ``generate`` for the claimed stream ``info``; counted here until it ends.

        ``buffer``, ``closing`` and ``cut_off`` are for drives of other content
        (:mod:`pts.ui`): what the writer persists from, the last words before the
        final write, and whether a persistence failure cuts the response off.
        """
        drive = Drive(
            owner, request, info, generate, buffer=buffer, closing=closing, cut_off=cut_off
        )
        self._drives[info.id] = drive
        drive.task.add_done_callback(lambda _t: self._drives.pop(info.id, None))
        return drive

    async def wind_down(self, grace: float) -> None:
        """Shutdown: give every generation ``grace`` seconds; end the rest ``error``."""
        tasks = [drive.task for drive in self._drives.values()]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for drive in self.all():
            if drive.task in pending:
                drive.cancel(StreamStatus.ERROR, SHUTDOWN_MESSAGE)
        if pending:
            await asyncio.wait(pending, timeout=grace)


class TextStream(Stream):
    """A :class:`~litestar.response.Stream` whose own media type always wins.

    Litestar's ``Stream.to_asgi_response`` prefers the route handler's media
    type to the response's, and a handler infers ``application/json`` from a
    return annotation such as ``-> object`` or ``-> Any``: the token stream
    would go out as JSON. The driving response is text whatever the handler says.
    """

    __slots__ = ()

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


def driving_response(drive: Drive) -> Stream:
    """The HTTP response for the driving client: 200, text/plain, chunked, unbuffered."""
    return TextStream(
        drive.body(),
        status_code=200,
        media_type="text/plain",  # Litestar adds "; charset=utf-8"
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-PTS-Stream-Id": str(drive.stream_id),
        },
    )


async def keep_body(request: AnyRequest) -> None:
    """Read the request's body now, so that ``generate`` can still read it.

    The driving response listens for the client's disconnect, and that listener
    takes whatever body messages were not read yet: a ``generate`` that awaited
    ``request.json()`` would wait forever. Litestar keeps the body once read
    (bounded by the route's ``request_max_body_size``: a larger one is a 413
    before the stream is claimed).
    """
    if not isinstance(request, Request):  # driven outside an HTTP request (tests, scripts)
        return
    with contextlib.suppress(InternalServerException):  # read as a stream already: gone
        await request.body()

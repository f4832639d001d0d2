"""Driving a stream: the writer, and the HTTP action that streams to the driving browser.

A *driven* stream has one writer in one process. Its text goes two ways at
once: straight to the driving client (every token, at once) and through a
:class:`~pts.flush.Flusher` to Postgres (sentence by sentence). Delivery never
waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from litestar import Request
from litestar.response import Stream
from litestar.response.base import ASGIResponse

from pts.errors import InvalidInput, PersistenceFailed, PTSError, StreamClosed, StreamTooLarge
from pts.flush import Flusher
from pts.models import StreamInfo, StreamStatus
from pts.store import validate

if TYPE_CHECKING:
    from pts.core import PersistentTextStreaming

logger = logging.getLogger("pts.driver")

Append: TypeAlias = Callable[[str], Awaitable[None]]
"""``await append(text)``: hand one token (any amount of text) to pts."""

AnyRequest: TypeAlias = "Request[Any, Any, Any]"

Generate: TypeAlias = Callable[[AnyRequest, uuid.UUID, Append], Awaitable[None]]
"""``async def generate(request, stream_id, append)``: the app's generation, e.g. an LLM call."""

SHUTDOWN_MESSAGE = "the server shut down during generation"

YIELD_INTERVAL = 0.0005
"""A generator that never awaits yields after running this long (seconds).

A real model awaits its network for every token, and the response sends each
token then; a CPU-bound generator would otherwise starve the response. Yielding
on every token instead costs a full event-loop iteration per token."""


class StreamWriter:
    """Writes one stream; text is persisted on sentence boundaries, not per write.

    Get one from :meth:`PersistentTextStreaming.create_write_stream`. Finish it
    with :meth:`close` (status ``done``) or :meth:`abort`; until then this
    process heartbeats it, and if it stops (the process dies) the sweeper marks
    it ``timeout``. If another process cancels the stream, the next
    :meth:`write` raises StreamClosed.

    A write that would take the stream past the store's ``max_stream_size``
    raises StreamTooLarge and buffers nothing; text that is not valid Unicode
    (a lone surrogate) raises InvalidInput and buffers nothing.
    """

    def __init__(self, pts: PersistentTextStreaming, info: StreamInfo) -> None:
        self._pts = pts
        self.stream_id: uuid.UUID = info.id
        self._closed_status: StreamStatus | None = None
        self._finishing = False
        self.flusher = Flusher(
            pts.store,
            info.id,
            offset=info.size,
            policy=pts.flush,
            outage_limit=pts.outage_limit,
            on_failure=self._on_flush_failure,
        )
        self.flusher.start()
        self._cap = pts.store.max_stream_size
        self.on_remote_close: Callable[[StreamStatus], None] | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        pts._register(self)

    @property
    def size(self) -> int:
        """Bytes persisted so far."""
        return self.flusher.persisted

    @property
    def finished(self) -> bool:
        """True once closed, aborted, failed, or closed by another process."""
        return (
            self._finishing or self._closed_status is not None or self.flusher.failure is not None
        )

    async def write(self, text: str) -> None:
        """Add text to the stream. Raises StreamClosed once the stream is finished,
        StreamTooLarge past the size cap, InvalidInput for a lone surrogate."""
        self.write_nowait(text)

    def write_nowait(self, text: str, nbytes: int | None = None) -> None:
        """:meth:`write` without the coroutine, for the hot path."""
        self._check_open()
        if nbytes is None:
            nbytes = len(_encode(text))
        if self._cap is not None:
            held = self.flusher.persisted + self.flusher.buffered
            if held + nbytes > self._cap:
                raise StreamTooLarge(self.stream_id, held, nbytes, self._cap)
        self.flusher.write(text, nbytes)

    async def close(self) -> None:
        """Persist what is buffered and mark the stream ``done``."""
        await self._finish(StreamStatus.DONE, None)

    async def abort(self, reason: str | None = None) -> None:
        """Persist what is buffered and mark the stream ``aborted`` with ``reason``."""
        await self._finish(StreamStatus.ABORTED, validate.optional_text("reason", reason))

    async def fail(self, message: str) -> None:
        """Persist what is buffered and mark the stream ``error`` with ``message``."""
        await self._finish(StreamStatus.ERROR, validate.text("message", message))

    def _check_open(self) -> None:
        failure = self.flusher.failure
        if (
            self._closed_status is None
            and isinstance(failure, PTSError)
            and not isinstance(failure, StreamClosed)
        ):
            raise failure  # why persisting stopped: StreamTooLarge, PersistenceFailed
        if self.finished:
            status = self._closed_status or StreamStatus.DONE
            raise StreamClosed(self.stream_id, status)

    async def _finish(self, status: StreamStatus, reason: str | None) -> None:
        if self._closed_status is not None:
            raise StreamClosed(self.stream_id, self._closed_status)
        self._finishing = True
        try:
            await self.flusher.finish(status, reason)
            self._closed_status = status
        finally:
            self._pts._unregister(self)

    async def _interrupt(self, reason: str) -> None:
        """The server stops: end the stream now (``error``, ``reason``), then tell its owner.

        What is buffered is persisted with the final status; the owner's next
        write raises StreamClosed, and ``on_remote_close`` (if set) stops it at once.
        """
        if self.finished:
            return
        callback = self.on_remote_close
        try:
            await self._finish(StreamStatus.ERROR, validate.clean_message(reason))
        except StreamClosed:
            return  # finished elsewhere meanwhile
        except (PersistenceFailed, StreamTooLarge) as exc:
            await self._record_error(exc)
        if callback is not None:
            callback(StreamStatus.ERROR)

    def _closed_elsewhere(self, status: StreamStatus) -> None:
        """Another process (or the sweeper) finished the stream: stop writing."""
        if self._finishing or self._closed_status is not None:
            return
        self._closed_status = status
        self.flusher.stop(StreamClosed(self.stream_id, status))
        self._pts._unregister(self)
        if self.on_remote_close is not None:
            self.on_remote_close(status)

    def _on_flush_failure(self, exc: BaseException) -> None:
        if isinstance(exc, StreamClosed):
            self._closed_elsewhere(StreamStatus(exc.status))
            return
        logger.error("stream %s: persisting failed: %s", self.stream_id, exc)
        if self.on_failure is not None:
            self.on_failure(exc)
        elif isinstance(exc, StreamTooLarge):
            # Nobody drives this writer: end the stream now, not when the sweeper
            # notices its heartbeat stopped.
            self._pts._spawn(self._record_error(exc))

    async def _record_error(self, exc: PTSError) -> None:
        self._pts._unregister(self)
        try:
            await self._pts.store.set_status(self.stream_id, StreamStatus.ERROR, reason=str(exc))
        except Exception as err:  # noqa: BLE001 - best effort; the sweeper is the fallback
            logger.warning("stream %s: could not record the failure: %s", self.stream_id, err)


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
        pts: PersistentTextStreaming,
        request: AnyRequest,
        info: StreamInfo,
        generate: Generate,
    ) -> None:
        self.writer = StreamWriter(pts, info)
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
        self._too_large: StreamTooLarge | None = None  # an append passed the size cap
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
        if self._too_large is not None:
            raise self._too_large
        data = _encode(text)
        try:
            self.writer.write_nowait(text, len(data))  # raises StreamClosed once finished
        except StreamTooLarge as exc:
            # The stream ends 'error' whatever the generator does with this.
            self._too_large = exc
            raise
        if not self._detached:
            self._pending.append(data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # Let the response (and the flusher) run: at once for the first token,
        # then after every YIELD_INTERVAL this generator ran without awaiting
        # (measured from when it resumed, so other tasks' time does not count).
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
            status = self.writer._closed_status or StreamStatus.ABORTED
        except Exception as exc:  # noqa: BLE001 - the app's generator failed: record it
            logger.info("stream %s: generator raised %r", self.stream_id, exc)
            status, reason = StreamStatus.ERROR, str(exc) or type(exc).__name__
        self._generating = False
        if self._too_large is not None:
            status, reason = StreamStatus.ERROR, str(self._too_large)
        if reason is not None:
            # Our own message (from an exception, say): make it storable.
            reason = validate.clean_message(reason)
        # The driving client has every token already: end its response now,
        # before the final write, so delivery never waits for the database.
        # A response whose text is incomplete is cut off, so the client knows.
        failure = self.writer.flusher.failure
        cut = self._too_large or (
            failure if isinstance(failure, PersistenceFailed | StreamTooLarge) else None
        )
        self._finish_response(_End(cut))
        if self.writer._closed_status is not None:
            return  # finished elsewhere (cancel from another process, the sweeper)
        try:
            await self.writer._finish(status, reason)
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
            store = self.writer._pts.store
            await store.set_status(self.stream_id, StreamStatus.ERROR, reason=str(exc))
        except Exception as err:  # noqa: BLE001 - best effort
            logger.warning("stream %s: could not record the failure: %s", self.stream_id, err)


def _encode(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate is the caller's InvalidInput, not a broken stream."""
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"text is not valid Unicode: a lone surrogate at position {exc.start}"
        ) from None


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

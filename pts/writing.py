"""Writing a stream: :class:`StreamWriter`, and the registry of the writers a process owns.

A writer's text is persisted on sentence boundaries by its
:class:`~pts.flush.Flusher`. The :class:`WriterRegistry` is what the process
knows of its writers: the ones the heartbeat keeps alive, the ones a
notification from another process (a cancel, the sweeper) must stop, the
ones still open at shutdown. The component (:mod:`pts.core`) owns one
registry and feeds it; this module does not know the component.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Protocol

from pts.errors import (
    InvalidInput,
    PersistenceFailed,
    PTSError,
    StreamClosed,
    StreamNotFound,
    StreamTooLarge,
)
from pts.flush import FlushBuffer, Flusher, FlushPolicy
from pts.models import StreamInfo, StreamStatus
from pts.stats import Counters
from pts.store import validate
from pts.store.base import Store

__all__ = ["StreamWriter", "WriterOwner", "WriterRegistry", "encode_text"]

logger = logging.getLogger("pts.driver")  # the name operators filter on, from before the move

Spawn = Callable[[Coroutine[object, object, None]], None]


class WriterRegistry:
    """The streams this process writes: heartbeated, and stopped when finished elsewhere.

    :param spawn: runs background work (the owner keeps and cancels its tasks).
    """

    def __init__(self, spawn: Spawn) -> None:
        self._writers: dict[uuid.UUID, StreamWriter] = {}
        self.spawn = spawn

    def __len__(self) -> int:
        return len(self._writers)

    def get(self, stream_id: uuid.UUID) -> StreamWriter | None:
        """This process's writer of ``stream_id``, if it has one."""
        return self._writers.get(stream_id)

    def ids(self) -> list[uuid.UUID]:
        """The streams written here (to heartbeat)."""
        return list(self._writers)

    def writers(self) -> list[StreamWriter]:
        """The writers, as a list (safe to iterate while they finish)."""
        return list(self._writers.values())

    def interrupt(self, reason: str, *, sparing: set[uuid.UUID]) -> list[asyncio.Future[None]]:
        """The server stops: end every writer's stream (``error``, ``reason``) but those in
        ``sparing`` (driven answers, which their drive ends); the work, to await."""
        return [
            asyncio.ensure_future(writer._interrupt(reason))
            for writer in self.writers()
            if writer.stream_id not in sparing
        ]

    def add(self, writer: StreamWriter) -> None:
        """Count ``writer`` as this process's (heartbeated) writer of its stream."""
        self._writers[writer.stream_id] = writer

    def discard(self, writer: StreamWriter) -> None:
        """``writer`` is finished: stop heartbeating its stream (a newer writer stays)."""
        if self._writers.get(writer.stream_id) is writer:
            del self._writers[writer.stream_id]

    def closed_elsewhere(self, stream_id: uuid.UUID, status: StreamStatus) -> None:
        """Another process (or the sweeper) finished ``stream_id``: its writer here stops."""
        writer = self._writers.get(stream_id)
        if writer is not None:
            writer._closed_elsewhere(status)

    async def check(self, store: Store) -> None:
        """Stop every writer whose stream the table says is finished or gone.

        For when notifications may have been missed (the listener reconnected,
        a heartbeat found a stream no longer streaming).
        """
        for writer in self.writers():
            try:
                info = await store.get_stream(writer.stream_id)
            except StreamNotFound:
                writer._closed_elsewhere(StreamStatus.ABORTED)
                continue
            if info.closed:
                writer._closed_elsewhere(info.status)

    def abandon_all(self) -> None:
        """Shutdown: stop persisting for writers their owners never closed.

        Their text so far stays; with no heartbeat the sweeper marks them ``timeout``.
        """
        for writer in self.writers():
            logger.warning("stream %s: writer not closed before shutdown", writer.stream_id)
            writer.flusher.stop(StreamClosed(writer.stream_id, StreamStatus.STREAMING))
        self._writers.clear()


class WriterOwner(Protocol):
    """What a :class:`StreamWriter` needs of its owner (a ``PersistentTextStreaming``)."""

    @property
    def store(self) -> Store: ...

    @property
    def flush(self) -> FlushPolicy: ...

    @property
    def outage_limit(self) -> float: ...

    @property
    def writers(self) -> WriterRegistry: ...

    @property
    def counters(self) -> Counters: ...


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

    def __init__(
        self, pts: WriterOwner, info: StreamInfo, *, buffer: FlushBuffer | None = None
    ) -> None:
        self._store = pts.store
        self._registry = pts.writers
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
            buffer=buffer,
            counters=pts.counters,
        )
        self.flusher.start()
        self._cap = pts.store.max_stream_size
        self.on_remote_close: Callable[[StreamStatus], None] | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self._registry.add(self)

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

    @property
    def closed_status(self) -> StreamStatus | None:
        """The status the stream was finished with (here or elsewhere); ``None`` until then."""
        return self._closed_status

    async def write(self, text: str) -> None:
        """Add text to the stream. Raises StreamClosed once the stream is finished,
        StreamTooLarge past the size cap, InvalidInput for a lone surrogate."""
        self.write_nowait(text)

    def write_nowait(self, text: str, nbytes: int | None = None) -> None:
        """:meth:`write` without the coroutine, for the hot path."""
        if nbytes is None:
            nbytes = len(encode_text(text))
        self.reserve(nbytes)
        self.flusher.write(text, nbytes)

    def reserve(self, nbytes: int) -> None:
        """Check that ``nbytes`` more may be buffered: raises StreamClosed once the stream
        is finished, StreamTooLarge past the size cap, or why persisting stopped.

        For a writer of another buffer (``buffer=``, :mod:`pts.ui`): call it, add to
        the buffer, then ``flusher.wake()``.
        """
        self._check_open()
        if self._cap is not None:
            held = self.flusher.persisted + self.flusher.buffered
            if held + nbytes > self._cap:
                raise StreamTooLarge(self.stream_id, held, nbytes, self._cap)

    async def close(self) -> None:
        """Persist what is buffered and mark the stream ``done``."""
        await self.finish(StreamStatus.DONE, None)

    async def abort(self, reason: str | None = None) -> None:
        """Persist what is buffered and mark the stream ``aborted`` with ``reason``."""
        await self.finish(StreamStatus.ABORTED, validate.optional_text("reason", reason))

    async def fail(self, message: str) -> None:
        """Persist what is buffered and mark the stream ``error`` with ``message``."""
        await self.finish(StreamStatus.ERROR, validate.text("message", message))

    async def finish(self, status: StreamStatus, reason: str | None) -> None:
        """Persist what is buffered and end the stream with ``status`` and ``reason`` as given.

        :meth:`close`, :meth:`abort` and :meth:`fail` are the checked spellings;
        this one is for the driving response, whose reason is already clean.
        Raises StreamClosed if the stream is finished already.
        """
        if self._closed_status is not None:
            raise StreamClosed(self.stream_id, self._closed_status)
        self._finishing = True
        try:
            await self.flusher.finish(status, reason)
            self._closed_status = status
        finally:
            self._registry.discard(self)

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

    async def _interrupt(self, reason: str) -> None:
        """The server stops: end the stream now (``error``, ``reason``), then tell its owner.

        What is buffered is persisted with the final status; the owner's next
        write raises StreamClosed, and ``on_remote_close`` (if set) stops it at once.
        """
        if self.finished:
            return
        callback = self.on_remote_close
        try:
            await self.finish(StreamStatus.ERROR, validate.clean_message(reason))
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
        self._registry.discard(self)
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
            self._registry.spawn(self._record_error(exc))

    async def _record_error(self, exc: PTSError) -> None:
        self._registry.discard(self)
        try:
            await self._store.set_status(self.stream_id, StreamStatus.ERROR, reason=str(exc))
        except Exception as err:  # noqa: BLE001 - best effort; the sweeper is the fallback
            logger.warning("stream %s: could not record the failure: %s", self.stream_id, err)


def encode_text(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate is the caller's InvalidInput, not a broken stream."""
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"text is not valid Unicode: a lone surrogate at position {exc.start}"
        ) from None

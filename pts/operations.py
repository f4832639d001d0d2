"""``StreamOperations``: what an app does with streams, over the component's parts.

Create, drive, write, read (whole, or live), cancel, delete. These are the
methods of :class:`~pts.PersistentTextStreaming` that are not its lifecycle:
the component (:mod:`pts.core`) builds the parts (store, hub, the registries
of drives and writers) and subclasses this; nothing else does.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Any

from litestar import Response
from litestar.response import Stream

from pts.body import PagedBody, read_body
from pts.driving import AnyRequest, Drives, Generate, driving_response, keep_body
from pts.errors import (
    AlreadyDriven,
    Draining,
    InvalidInput,
    InvalidOffset,
    InvalidTransition,
    PTSError,
)
from pts.flush import FlushPolicy
from pts.live.buffer import Chunk
from pts.live.hub import Hub
from pts.live.notification import Notification
from pts.live.subscribe import Update, subscribe_text
from pts.models import Metadata, StreamBody, StreamInfo, StreamStatus
from pts.stats import Counters
from pts.store import Store, validate
from pts.store.base import DEFAULT_CONTENT_TYPE
from pts.ui.drive import require_ui_stream, start_ui_drive, ui_response
from pts.ui.resume import KEEPALIVE_SECONDS, no_content, replay
from pts.ui.types import GenerateUI
from pts.writing import StreamWriter, WriterRegistry

__all__ = ["STOP_WAIT", "StreamOperations"]

STOP_WAIT = 2.0
"""Seconds :meth:`StreamOperations.cancel` waits for another process to stop the stream it
drives (storing its buffered text) before ending the stream itself."""


class StreamOperations:
    """The stream operations of :class:`~pts.PersistentTextStreaming` (its base class)."""

    # Set by the component (pts.core), the one subclass.
    flush: FlushPolicy
    outage_limit: float
    read_page_bytes: int
    _store: Store | None
    _hub: Hub | None
    _drives: Drives
    _writers: WriterRegistry
    _stopping: bool
    counters: Counters

    @property
    def writers(self) -> WriterRegistry:
        """The streams this process writes: heartbeated, stopped when finished elsewhere."""
        return self._writers

    @property
    def store(self) -> Store:
        """The underlying store, for operations the component does not wrap."""
        if self._store is None:
            raise RuntimeError("PersistentTextStreaming is not open: call `await pts.open()`")
        return self._store

    # -- streams -----------------------------------------------------------

    async def create_stream(
        self,
        client_id: str | None = None,
        metadata: Metadata | None = None,
        *,
        owner: str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        ttl: float | None = None,
        expires_at: datetime | None = None,
    ) -> uuid.UUID:
        """Create a ``pending`` stream; returns its id. Raises ClientIdTaken.

        With ``ttl`` (seconds after creation, by the database's clock) or
        ``expires_at`` (not both: InvalidInput), the stream and its text are
        deleted by the sweeper's garbage collection once that time has passed:
        at its first sweep after, or, if the stream is being driven then, at
        the first sweep after it finishes (an answer is never cut off). Until
        it is collected it reads as before.
        """
        info = await self.store.create_stream(
            client_id=client_id,
            metadata=metadata,
            owner=owner,
            content_type=content_type,
            ttl=ttl,
            expires_at=expires_at,
        )
        return info.id

    async def get_stream(self, stream_id: uuid.UUID) -> StreamInfo:
        """A stream's metadata. Raises StreamNotFound."""
        return await self.store.get_stream(stream_id)

    async def get_stream_body(self, stream_id: uuid.UUID) -> StreamBody:
        """The whole text persisted so far, with the stream's state. Raises StreamNotFound.

        It is all loaded into memory: for a long stream, prefer :meth:`subscribe`
        or :meth:`read_stream` (read in pages). The plugin's ``GET`` route
        streams the same document in pages.
        """
        body = await self.body_pages(await self.store.get_stream(stream_id))
        return await body.collect()

    async def body_pages(self, info: StreamInfo) -> PagedBody:
        """The text of the stream ``info`` describes, to be read in pages of ``read_page_bytes``.

        The first page is read now and fixes the snapshot (see
        :class:`~pts.body.PagedBody`): ``body.whole`` is the text if one page
        held it all, else ``body.texts()`` yields it page by page. Raises StreamNotFound.
        """
        return await read_body(self.store, info, self.read_page_bytes)

    async def cancel(self, stream_id: uuid.UUID, reason: str | None = None) -> StreamInfo:
        """Abort the stream for every viewer, from any process.

        The driver's generation is cancelled (within a second, wherever it
        runs), and the text it had buffered is stored with the final status:
        a stream driven in another process is asked to stop there
        (:meth:`Store.request_stop`), and only if it has not ended within
        STOP_WAIT seconds (its process died, or predates the request) is it
        ended from here. Cancelling a finished stream changes nothing and
        returns its state. Raises InvalidInput for a ``reason`` Postgres
        cannot store (a NUL, a lone surrogate), before anything changes.
        """
        validate.optional_text("reason", reason)
        if await self._stop_here(stream_id, reason):
            return await self.store.get_stream(stream_id)
        if await self.store.request_stop(stream_id, reason):
            info = await self._finished_within(stream_id, STOP_WAIT)
            if info.closed:
                return info
        try:
            # The NOTIFY of this change reaches the driving process, which stops.
            return await self.store.set_status(stream_id, StreamStatus.ABORTED, reason=reason)
        except InvalidTransition:
            return await self.store.get_stream(stream_id)

    async def _stop_here(self, stream_id: uuid.UUID, reason: str | None) -> bool:
        """End ``stream_id`` ``aborted`` if it is driven or written here; False if not."""
        drive = self._drives.get(stream_id)
        if drive is not None:
            # Stop the generation ourselves, so the text it had buffered is
            # persisted with the final status.
            drive.cancel(StreamStatus.ABORTED, reason)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(drive.task), timeout=5.0)
            return True
        writer = self._writers.get(stream_id)
        if writer is not None:
            with contextlib.suppress(PTSError):
                await writer.abort(reason)
            return True
        return False

    def on_stop_request(self, note: Notification) -> None:
        """The change feed's handler: another process asked to stop a stream driven here."""
        if note.stop and (self._drives.get(note.stream_id) or self._writers.get(note.stream_id)):
            self._writers.spawn(self._stop_requested(note.stream_id, note.reason))

    async def _stop_requested(self, stream_id: uuid.UUID, reason: str | None) -> None:
        await self._stop_here(stream_id, reason)

    async def _finished_within(self, stream_id: uuid.UUID, seconds: float) -> StreamInfo:
        """The stream once it is closed, or as it is after ``seconds`` (hub-woken, not polled)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                info = await self.store.get_stream(stream_id)
                async for chunk in self._live(stream_id, 0).subscribe_bytes(stream_id, info.size):
                    if chunk is not None and chunk.closed:
                        break
        return await self.store.get_stream(stream_id)

    async def delete_stream(self, stream_id: uuid.UUID) -> None:
        """Delete the stream and its text. Raises StreamNotFound."""
        await self.store.delete_stream(stream_id)

    # -- driving -------------------------------------------------------------

    async def stream(self, request: AnyRequest, stream_id: uuid.UUID, generate: Generate) -> Stream:
        """The HTTP action: run ``generate`` and stream its text to this client.

        Claims the stream (``pending -> streaming``) so only one driver runs:
        a second call raises AlreadyDriven, which the plugin answers with 409
        ``{"error": "already_driven", "status", "size"}`` (subscribe instead).
        The generation runs in its own task and outlives this request; tokens go
        to the client at once and to Postgres on sentence boundaries. The stream
        ends ``done``, ``error`` (the generator raised), ``aborted`` (cancel) or
        ``timeout`` (this process died). Raises StreamNotFound.
        """
        await keep_body(request)
        info = await self._claim(stream_id)
        return driving_response(self._drives.start(self, request, info, generate))

    async def stream_ui(
        self, request: AnyRequest, stream_id: uuid.UUID, generate: GenerateUI
    ) -> Response[Any]:
        """The AI SDK twin of :meth:`stream`: run ``generate`` and stream its UI message chunks.

        ``generate(request, stream_id, ui)`` writes with ``await ui.text(delta)``,
        ``await ui.reasoning(delta)`` and ``await ui.write(chunk)`` (any other UI
        message chunk; InvalidChunk for one the AI SDK would refuse). pts adds
        ``start``, the part boundaries and ``finish`` (``error`` if generate
        raised, ``abort`` on :meth:`cancel`) unless the app wrote them, and
        ``[DONE]``. The response is SSE (``data: {json}``) with the AI SDK's
        headers, each chunk sent at once; the stream stores the chunks as JSON
        messages, deltas merged per sentence. The claim, the detached generation,
        cancel and outages are :meth:`stream`'s, except that a failure to persist
        ends the driving read with an ``error`` chunk rather than cutting it off
        (the AI SDK shows an error; a cut read looks like a network fault).
        Raises StreamNotFound,
        NotAUIStream (the stream is not ``application/json``; checked before the
        claim) or AlreadyDriven.
        """
        await keep_body(request)
        require_ui_stream(await self.store.get_stream(stream_id))
        info = await self._claim(stream_id)
        drive = start_ui_drive(self._drives, self, request, info, generate)
        return ui_response(drive.body(), stream_id)

    async def resume_ui(
        self, stream_id: uuid.UUID | None, *, replay_finished: bool = False
    ) -> Response[Any]:
        """``GET {api}/{chatId}/stream`` of ``useChat({ resume: true })``, from any process.

        204 (empty) when ``stream_id`` is None or the stream has finished (unless
        ``replay_finished``); else 200, SSE as :meth:`stream_ui`: every stored
        chunk from ``start``, then the live ones as they are persisted, then the
        end (``finish``, ``abort`` or ``error``) and ``[DONE]``. Raises
        StreamNotFound, or NotAUIStream for a stream that is not ``application/json``.
        """
        if stream_id is None:
            return no_content()
        info = await self.store.get_stream(stream_id)
        require_ui_stream(info)
        if info.finished and not replay_finished:
            return no_content()
        chunks = self.subscribe_bytes(stream_id, 0, idle=KEEPALIVE_SECONDS)
        return ui_response(replay(chunks, lambda: self.store.get_stream(stream_id)), stream_id)

    async def _claim(self, stream_id: uuid.UUID) -> StreamInfo:
        """``pending -> streaming``, for one driver only: else AlreadyDriven.

        Draining when this server is stopping: the stream stays ``pending`` for
        another node to drive.
        """
        if self._stopping:
            raise Draining(stream_id)
        try:
            return await self.store.claim(stream_id)
        except InvalidTransition as exc:
            # The plugin maps it to 409 {"error": "already_driven", "status", "size"}.
            raise AlreadyDriven(exc.stream_id, exc.current, exc.size) from None

    async def create_write_stream(
        self,
        client_id: str | None = None,
        metadata: Metadata | None = None,
        *,
        owner: str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        ttl: float | None = None,
        expires_at: datetime | None = None,
    ) -> StreamWriter:
        """Create a stream and return its writer (``await writer.write(text)``, ``close()``).

        The stream starts ``streaming``. Raises ClientIdTaken if ``client_id`` is in use.
        ``ttl`` / ``expires_at``: as for :meth:`create_stream` (never collected
        while the writer still writes).
        """
        info = await self.store.create_stream(
            client_id=client_id,
            metadata=metadata,
            owner=owner,
            content_type=content_type,
            status=StreamStatus.STREAMING,
            ttl=ttl,
            expires_at=expires_at,
        )
        return StreamWriter(self, info)

    # -- reading -------------------------------------------------------------

    async def subscribe(
        self, stream_id: uuid.UUID, offset: int = 0
    ) -> AsyncGenerator[Update, None]:
        """Watch a stream live: its text from byte ``offset`` on, then every change.

        Yields :class:`~pts.Update` (offset, end, text, status, finished):
        first what the table holds from ``offset`` (a long backlog as several
        updates, one per page of ``read_page_bytes``), then each flush as it
        commits, and status changes. Only the last update has ``finished``
        (earlier pages of a finished stream already carry its final status).
        Ends after the stream finishes (``done``, ``error``, ``timeout``,
        ``aborted``). To resume, subscribe again from the
        last update's ``end``: nothing is lost or repeated. Raises
        StreamNotFound (also if the stream is deleted meanwhile), or
        InvalidOffset for an offset past the end or inside a character.
        """
        async for update in self.subscribe_text(stream_id, offset):
            if update is not None:
                yield update

    def subscribe_text(
        self, stream_id: uuid.UUID, offset: int = 0, *, idle: float | None = None
    ) -> AsyncGenerator[Update | None, None]:
        """:meth:`subscribe`, plus ``None`` after each ``idle`` seconds of silence.

        For a live response that sends keep-alives (the SSE route): it can tell
        silence from the end. Without ``idle``, exactly :meth:`subscribe`.
        """
        hub = self._live(stream_id, offset)
        return subscribe_text(hub, self.store, stream_id, offset, idle=idle)

    def _live(self, stream_id: uuid.UUID, offset: int) -> Hub:
        """The hub, for a live read from ``offset`` (which must not be negative)."""
        if self._hub is None:
            raise RuntimeError("PersistentTextStreaming is not open: call `await pts.open()`")
        if offset < 0:
            raise InvalidOffset(stream_id, offset, 0)
        return self._hub

    def subscribe_bytes(
        self, stream_id: uuid.UUID, offset: int = 0, *, idle: float | None = None
    ) -> AsyncGenerator[Chunk | None, None]:
        """Raw chunks of a stream from byte ``offset`` on, live (see :meth:`Hub.subscribe_bytes`).

        For protocols that carry bytes, not text (Durable Streams): no decoding,
        offsets are bytes. With ``idle``, ``None`` comes after each ``idle``
        seconds of silence. Ends after the stream is closed.
        """
        return self._live(stream_id, offset).subscribe_bytes(stream_id, offset, idle=idle)

    async def read_stream(
        self,
        stream_id: uuid.UUID | None = None,
        *,
        client_id: str | None = None,
        byte_offset: int = 0,
    ) -> AsyncIterator[str]:
        """The stream's text from ``byte_offset`` on, live, ending when the stream finishes.

        Name the stream by ``stream_id`` or ``client_id``. Raises StreamNotFound,
        or InvalidOffset for an offset past the end or inside a character.
        """
        if (stream_id is None) == (client_id is None):
            raise InvalidInput("read_stream takes exactly one of stream_id and client_id")
        if stream_id is None:
            assert client_id is not None
            stream_id = (await self.store.get_stream_by_client_id(client_id)).id
        async for update in self.subscribe(stream_id, byte_offset):
            if update.text:
                yield update.text

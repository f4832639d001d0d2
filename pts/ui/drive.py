"""Driving a UI message stream: the drive's sink, its last words, and the SSE response.

A UI answer is driven by the same :class:`~pts.driving.Drive` as text (one
claim, a generation that outlives the client, cancel, heartbeat, outages);
only what it carries differs. Each chunk goes to the driving client at once as
``data: {json}`` and into the stream's :class:`~pts.ui.buffer.UIBuffer`, which
its flusher persists beside delivery.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

from litestar.response import Stream

from pts.driving import AnyRequest, Append, Drive, Drives, TextStream
from pts.errors import NotAUIStream, PTSError, StreamTooLarge
from pts.models import StreamInfo, StreamStatus
from pts.ui.buffer import UIBuffer
from pts.ui.chunks import DONE
from pts.ui.types import GenerateUI
from pts.ui.writer import UIStreamWriter
from pts.writing import WriterOwner

__all__ = ["UI_HEADERS", "require_ui_stream", "start_ui_drive", "ui_response"]

logger = logging.getLogger("pts.driver")

UI_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Vercel-AI-UI-Message-Stream": "v1",
    "X-Accel-Buffering": "no",
}
"""The AI SDK's UI message stream headers, beside ``content-type: text/event-stream``."""


def require_ui_stream(info: StreamInfo) -> None:
    """A UI message stream is a JSON stream: else NotAUIStream."""
    if info.content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise NotAUIStream(info.id, info.content_type)


class _DriveSink:
    """Each chunk to the stream's buffer (checked against the size cap), then to the client."""

    def __init__(self, buffer: UIBuffer) -> None:
        self.buffer = buffer
        self.drive: Drive | None = None
        self._loop = asyncio.get_running_loop()

    def put(self, message: bytes, head: bytes | None, delta: str) -> None:
        drive = self.drive
        assert drive is not None
        if drive.too_large is not None:
            raise drive.too_large
        writer = drive.writer
        try:
            writer.reserve(len(message) + 1)  # raises StreamClosed once finished
        except StreamTooLarge as exc:
            drive.too_large = exc  # the stream ends 'error' whatever generate does
            raise
        now = self._loop.time()
        if head is None:
            self.buffer.add(message, now)
        else:
            self.buffer.add_delta(head, delta, now)
        writer.flusher.wake()
        drive.deliver(b"data: " + message + b"\n\n")

    async def pace(self) -> None:
        assert self.drive is not None
        await self.drive.pace()

    def last_words(self, messages: list[bytes]) -> None:
        """The end of the answer: to the client always, to the buffer while it takes more."""
        drive = self.drive
        assert drive is not None
        writer = drive.writer
        for message in messages:
            if drive.too_large is None and not writer.finished:
                try:
                    writer.reserve(len(message) + 1)
                    self.buffer.add(message, self._loop.time())
                    writer.flusher.wake()
                except PTSError as exc:  # too large, say: the status still says how it ended
                    logger.info("stream %s: last chunk not stored: %s", drive.stream_id, exc)
            drive.deliver(b"data: " + message + b"\n\n")
        drive.deliver(DONE)


def start_ui_drive(
    drives: Drives,
    owner: WriterOwner,
    request: AnyRequest,
    info: StreamInfo,
    generate: GenerateUI,
) -> Drive:
    """Run ``generate`` for the claimed UI stream ``info`` (see :meth:`stream_ui`)."""
    buffer = UIBuffer()
    sink = _DriveSink(buffer)
    ui = UIStreamWriter(str(info.id), sink)

    async def run(req: AnyRequest, stream_id: uuid.UUID, _append: Append) -> None:
        await generate(req, stream_id, ui)

    def closing(status: StreamStatus, reason: str | None) -> None:
        sink.last_words(ui.close(status, reason))

    drive = drives.start(owner, request, info, run, buffer=buffer, closing=closing, cut_off=False)
    sink.drive = drive  # before the drive's task first runs (it starts at the next await)
    return drive


def ui_response(body: AsyncIterator[bytes], stream_id: uuid.UUID) -> Stream:
    """A UI message stream response: 200, ``text/event-stream``, the AI SDK's headers."""
    return TextStream(
        body,
        status_code=200,
        media_type="text/event-stream",
        # Said outright: Litestar would add "; charset=utf-8" to a text/* media type.
        headers={
            "Content-Type": "text/event-stream",
            **UI_HEADERS,
            "X-PTS-Stream-Id": str(stream_id),
        },
    )

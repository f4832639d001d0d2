"""Streams from a terminal: ``pts tail`` and ``pts write`` (the CLI's workers).

Both talk to the database directly, like any server process on it: no server
has to run, no token is needed (the database URL is the credential), and what
they do reaches every server on that database through NOTIFY, as if it had
been done there. A stream is named by its id (a UUID, or ``pts/<uuid>``) or by
a Durable Streams protocol path (anything else, as in ``/v1/stream/{path}``).
"""

from __future__ import annotations

import asyncio
import codecs
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from pts.core import PersistentTextStreaming
from pts.errors import (
    InvalidInput,
    InvalidTransition,
    StreamClosed,
    StreamConflict,
    StreamDeleted,
    StreamNotFound,
)
from pts.models import AppendOutcome, CreateOutcome, StreamInfo
from pts.writing import StreamWriter

__all__ = ["LINE_BYTES", "Target", "follow", "parse_target", "write_lines"]

LINE_BYTES = 64 * 1024
"""The most bytes ``pts write`` reads before it appends: a longer line goes in parts."""

TEXT_PLAIN = "text/plain"

_PTS_PREFIX = "pts/"  # how the protocol names a pts stream: /v1/stream/pts/{id}
_RESERVED_PREFIX = "__ds/"


@dataclass(frozen=True, slots=True)
class Target:
    """A stream named on the command line: by id, or by protocol path."""

    stream_id: uuid.UUID | None = None
    path: str | None = None

    def __str__(self) -> str:
        return str(self.stream_id) if self.path is None else self.path


def parse_target(raw: str) -> Target:
    """A stream id (a UUID, or ``pts/<uuid>``) or a protocol path; InvalidInput if neither."""
    name = raw.strip().strip("/")
    if name.startswith(_PTS_PREFIX):
        name = name[len(_PTS_PREFIX) :]
        try:
            return Target(stream_id=uuid.UUID(name))
        except ValueError:
            raise InvalidInput(f"{raw[:100]!r}: pts/ is followed by a stream id") from None
    try:
        return Target(stream_id=uuid.UUID(name))
    except ValueError:
        pass
    if not name or "\x00" in name or len(name.encode("utf-8", "replace")) > 1024:
        raise InvalidInput(
            f"{raw[:100]!r} is neither a stream id (a UUID) nor a Durable Streams path"
        )
    if name.startswith(_RESERVED_PREFIX):
        raise InvalidInput("paths under __ds/ are reserved by the protocol")
    return Target(path=name)


async def _stream_at(pts: PersistentTextStreaming, target: Target) -> StreamInfo:
    if target.path is None:
        assert target.stream_id is not None
        return await pts.get_stream(target.stream_id)
    found = await pts.store.ds_lookup(target.path)
    if found is not None and not found.expired and found.gone:
        raise StreamDeleted(f"stream {target.path!r} was deleted (its forks still read it)")
    if found is None or not found.exists:
        raise _no_stream_at(target.path)
    return found.stream


def _no_stream_at(path: str) -> StreamNotFound:
    exc = StreamNotFound(path)
    # A mistyped id lands here too: say both things it could have been.
    exc.args = (
        f"{path[:100]!r} is not a stream id (a UUID), and no Durable Streams stream has this path",
    )
    return exc


async def follow(
    pts: PersistentTextStreaming, target: Target, offset: int, out: Callable[[str], None]
) -> str:
    """Hand the stream's text from ``offset`` to ``out`` live; return its final status line."""
    stream = await _stream_at(pts, target)
    final = ""
    async for update in pts.subscribe(stream.id, offset):
        if update.text:
            out(update.text)
        if update.finished:
            reason = update.abort_reason or update.error
            final = f"[{update.status}{': ' + reason if reason else ''}]"
    return final


async def read_lines(fd: int) -> AsyncIterator[bytes]:
    """What arrives on file descriptor ``fd``, line by line, until EOF.

    Each line is handed on as soon as it is complete; a partial line, as soon
    as nothing more is there (a pipe's writer paused), so nothing waits for
    a newline that may never come. At most :data:`LINE_BYTES` per read.

    A daemon thread reads the descriptor itself (not ``sys.stdin``, whose
    buffer lock a blocked read would hold at interpreter shutdown after
    Ctrl+C); a queue of a few reads between it and the event loop keeps memory
    bounded when the database is slower than the input.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | OSError | None] = asyncio.Queue(maxsize=16)

    def reader() -> None:
        item: bytes | OSError | None
        while True:
            try:
                item = os.read(fd, LINE_BYTES) or None
            except OSError as exc:
                item = exc
            try:
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return
            if not isinstance(item, bytes):
                return

    threading.Thread(target=reader, name="pts-write-stdin", daemon=True).start()
    while True:
        item = await queue.get()
        if item is None:
            return
        if isinstance(item, OSError):
            raise item
        for line in item.splitlines(keepends=True):
            yield line


async def write_lines(
    pts: PersistentTextStreaming, target: Target, lines: AsyncIterator[bytes]
) -> StreamInfo:
    """Append ``lines`` as they come, then close the stream; return its final state.

    A stream id must name a ``pending`` stream: it is claimed (``streaming``)
    and written as its one driver, with a heartbeat; at the end it is ``done``.
    If this is interrupted (Ctrl+C), it ends ``aborted``. A protocol path is
    created (``text/plain``) if missing, appended to, and closed at the end;
    an interruption leaves it open.
    """
    if target.path is not None:
        return await _write_path(pts, target.path, lines)
    assert target.stream_id is not None
    try:
        info = await pts.store.claim(target.stream_id)
    except InvalidTransition as exc:
        raise StreamConflict(
            f"stream {target.stream_id} is {exc.current}: pts write drives a pending stream "
            "only (create one with POST /streams); pts tail watches it"
        ) from None
    writer = StreamWriter(pts, info)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        async for line in lines:
            try:
                text = decoder.decode(line)
            except UnicodeDecodeError:
                await writer.fail("pts write: the input is not UTF-8")
                raise InvalidInput("the input is not UTF-8 text") from None
            if text:
                await writer.write(text)
        await writer.close()
    except StreamClosed:
        pass  # finished elsewhere (cancelled): its final state says how
    except BaseException:
        if not writer.finished:
            await asyncio.shield(writer.abort("pts write was interrupted"))
        raise
    return await pts.get_stream(info.id)


async def _write_path(
    pts: PersistentTextStreaming, path: str, lines: AsyncIterator[bytes]
) -> StreamInfo:
    store = pts.store
    outcome, _ = await store.ds_create(path, content_type=TEXT_PLAIN)
    if outcome is CreateOutcome.GONE:
        raise StreamDeleted(f"{path!r} was deleted but its forks still hold it")
    async for line in lines:
        await _append(pts, path, line, close=False)
    await _append(pts, path, b"", close=True)
    return await _stream_at(pts, Target(path=path))


async def _append(pts: PersistentTextStreaming, path: str, data: bytes, *, close: bool) -> None:
    result = await pts.store.ds_append(path, data, media_type=TEXT_PLAIN, close=close)
    outcome = result.outcome
    if outcome in (AppendOutcome.APPENDED, AppendOutcome.DUPLICATE):
        return
    if outcome is AppendOutcome.NOT_FOUND:
        raise StreamNotFound(path)
    if outcome is AppendOutcome.GONE:
        raise StreamDeleted(f"stream {path!r} was deleted")
    if outcome is AppendOutcome.CLOSED:
        raise StreamConflict(f"stream {path!r} is closed: it takes no more text")
    if outcome is AppendOutcome.CONTENT_TYPE:
        stream = await _stream_at(pts, Target(path=path))
        raise StreamConflict(
            f"stream {path!r} holds {stream.content_type}; pts write appends {TEXT_PLAIN}"
        )
    raise StreamConflict(f"stream {path!r} refused the append ({outcome})")

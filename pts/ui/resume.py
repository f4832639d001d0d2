"""Resuming a UI message stream: its stored chunks from ``start``, then live, then the end.

The stored bytes are Durable Streams JSON messages (compact JSON, then a
comma); a read may end inside one, so only whole messages are sent. If the
stream ended without its last words stored (cancelled from another process,
timed out, failed to persist), the reader gets them made up from the status:
``finish``, ``abort`` or ``error``, once, then ``[DONE]``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from litestar import Response

from pts.live.buffer import Chunk
from pts.models import StreamInfo, StreamStatus
from pts.ui.chunks import DONE, encode

__all__ = ["KEEPALIVE_SECONDS", "Ending", "MessageSplitter", "no_content", "replay"]

KEEPALIVE_SECONDS = 15.0
"""A resumed read that heard nothing for this long sends an SSE comment (proxies
close idle connections; the AI SDK's parser skips comments)."""

KEEPALIVE = b": keep-alive\n\n"


def no_content() -> Response[bytes]:
    """204 with an empty body: nothing to resume (``useChat`` reads it as ``null``)."""
    return Response(b"", status_code=204)


class MessageSplitter:
    """Stored JSON messages, fed as bytes in any pieces; yields each whole message once."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._json = json.JSONDecoder()
        self._text = ""

    def feed(self, data: bytes) -> list[tuple[str, object]]:
        """The messages ``data`` completed: (compact JSON as stored, the value)."""
        text = self._text + self._decoder.decode(data)
        out: list[tuple[str, object]] = []
        position = 0
        while position < len(text):
            try:
                value, end = self._json.raw_decode(text, position)
            except json.JSONDecodeError:
                break  # cut off inside a message: the rest comes with the next piece
            if end >= len(text) or text[end] != ",":
                break  # a number cut off, or its comma not here yet
            out.append((text[position:end], value))
            position = end + 1
        self._text = text[position:]
        return out


class Ending:
    """What a reader has seen of the answer's end, to make up the last words if missing."""

    def __init__(self) -> None:
        self.started = False  # any message at all (a start is the first)
        self.ended = False  # a finish or abort
        self.last: str | None = None
        self.open: dict[str, str] = {}

    def see(self, value: object) -> None:
        kind = value.get("type") if isinstance(value, dict) else None
        if not isinstance(kind, str):
            return
        self.started = True
        self.last = kind
        if kind in ("finish", "abort"):
            self.ended = True
            self.open.clear()
        elif kind == "finish-step":
            self.open.clear()
        elif kind in ("text-start", "reasoning-start", "text-end", "reasoning-end"):
            part = value.get("id") if isinstance(value, dict) else None
            if isinstance(part, str):
                if kind.endswith("-start"):
                    self.open[part] = kind.removesuffix("-start")
                else:
                    self.open.pop(part, None)

    def last_words(self, info: StreamInfo) -> list[bytes]:
        """The chunks a reader still needs once the stream is ``info`` (finished)."""
        status = info.status
        if self.ended or (
            status in (StreamStatus.ERROR, StreamStatus.TIMEOUT) and self.last == "error"
        ):
            return []
        # Nothing stored at all (the first write never made it): the reader still
        # gets a message to hang the end on.
        out = [] if self.started else [encode({"type": "start", "messageId": str(info.id)})]
        out += [encode({"type": f"{kind}-end", "id": part}) for part, kind in self.open.items()]
        if status is StreamStatus.DONE:
            out.append(b'{"type":"finish"}')
        elif status is StreamStatus.ABORTED:
            reason = info.abort_reason
            out.append(encode({"type": "abort", **({"reason": reason} if reason else {})}))
        else:
            text = info.error or f"the answer ended: {status}"
            out.append(encode({"type": "error", "errorText": text}))
        return out


async def replay(
    chunks: AsyncIterator[Chunk | None], final: Callable[[], Awaitable[StreamInfo]]
) -> AsyncIterator[bytes]:
    """The SSE body of a resume: every stored chunk from the first, then live ones,
    then the last words if the stream did not store them, and ``[DONE]``.

    ``chunks`` is a live read from offset 0 with keep-alives (``None``);
    ``final`` reads the finished stream's state (its error or abort reason).
    """
    splitter = MessageSplitter()
    ending = Ending()
    async for chunk in chunks:
        if chunk is None:
            yield KEEPALIVE
            continue
        out: list[bytes] = []
        for text, value in splitter.feed(chunk.data):
            ending.see(value)
            out.append(b"data: " + text.encode() + b"\n\n")
        if chunk.final:
            info = await final()
            out.extend(b"data: " + message + b"\n\n" for message in ending.last_words(info))
            out.append(DONE)
            yield b"".join(out)
            return
        if out:
            yield b"".join(out)

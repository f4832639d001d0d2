"""A stream's whole text so far, read in pages of bounded bytes from one snapshot.

The first page's read fixes the snapshot: its size, status and closed flag
are the body's, and the later pages read exactly up to that size, so the text
and the state agree as if read at once. The text is decoded incrementally: a
character cut by a page boundary is held until its last byte arrives, so the
pieces join to exactly what decoding the whole at once would give.

:func:`json_with_text` writes a JSON document with one long text field piece
by piece: byte for byte the document ``encode_json`` would write for the
whole, without ever holding it.
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import AsyncIterator

import msgspec
from litestar.serialization import encode_json

from pts.errors import PTSError
from pts.models import ReadResult, StreamBody, StreamInfo
from pts.store.base import Store

__all__ = ["PagedBody", "json_with_text", "read_body"]


class PagedBody:
    """A stream's text as of one snapshot; the pages after the first are read on demand."""

    def __init__(self, store: Store, info: StreamInfo, first: ReadResult, page_bytes: int) -> None:
        self._store = store
        self._first: ReadResult | None = first
        self._page_bytes = page_bytes
        # Size and state come from the text's own snapshot (the stream may
        # have changed since its metadata was read).
        self.stream: StreamInfo = dataclasses.replace(
            info, size=first.size, status=first.status, closed=first.closed
        )
        """The stream's metadata, with the size and state of the snapshot."""
        self.whole: str | None = (
            first.data.decode("utf-8", errors="replace")
            if first.next_offset >= first.size
            else None
        )
        """The whole text, when one page held it all; else None (use :meth:`texts`)."""

    async def collect(self) -> StreamBody:
        """The whole text in memory, with the snapshot's state (reads every page). Once only."""
        text = self.whole
        if text is None:
            text = "".join([piece async for piece in self.texts()])
        return StreamBody(stream=self.stream, text=text)

    async def texts(self) -> AsyncIterator[str]:
        """The text in pieces, one per page (read as each is taken). Once only.

        Raises StreamNotFound if the stream is deleted meanwhile.
        """
        read, self._first = self._first, None
        if read is None:
            raise RuntimeError("PagedBody.texts() reads the body once")
        stream_id, end = self.stream.id, self.stream.size
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            position = read.next_offset
            data = read.data
            if position > end:  # never past the snapshot (a read ends on a chunk boundary)
                data, position = data[: end - read.offset], end
            del read  # hold one page at a time
            yield decoder.decode(data, final=position >= end)
            if position >= end:
                return
            read = await self._store.read(
                stream_id, position, max_bytes=min(self._page_bytes, end - position)
            )
            if read.next_offset <= position:
                # Bytes below a size the stream had are never removed but with it.
                raise PTSError(f"stream {stream_id}: no bytes at offset {position} of {end}")


async def read_body(store: Store, info: StreamInfo, page_bytes: int) -> PagedBody:
    """Read the first page of ``info``'s text (fixing the snapshot). Raises StreamNotFound."""
    first = await store.read(info.id, 0, max_bytes=page_bytes)
    return PagedBody(store, info, first, page_bytes)


async def json_with_text(
    envelope: object, field: str, pieces: AsyncIterator[str]
) -> AsyncIterator[bytes]:
    """The JSON of ``envelope`` with its string ``field`` (empty in ``envelope``)
    set to the concatenation of ``pieces``, written piece by piece.

    JSON escapes a string character by character, so the escaped pieces join
    to the escaped whole.
    """
    encoded = encode_json(envelope)
    marker = msgspec.json.encode(field) + b':""'
    # The key comes once: inside an encoded string value every quote is escaped.
    if encoded.count(marker) != 1:
        raise ValueError(f"{field!r} is not an empty string field of the envelope")
    head, tail = encoded.split(marker)
    yield head + marker[:-1]
    async for piece in pieces:
        if piece:
            yield msgspec.json.encode(piece)[1:-1]
    yield b'"' + tail

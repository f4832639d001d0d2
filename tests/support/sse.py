"""One SSE client for every test: the WHATWG event-stream rules, parsed incrementally.

The rules (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end with CRLF, LF or CR; a line that starts with ``:`` is a comment; otherwise
the field name is what comes before the first ``:`` (the whole line if there is
none) and its value what comes after, less exactly one leading space. ``data``
values are joined with ``\\n``; ``event`` names the event (``message`` when not
given); ``id`` sets the last event id (unless it holds a NUL) and it carries over
to later events; ``retry`` sets the reconnection time when it is all ASCII digits;
other fields are ignored. A blank line dispatches the event, if it has data. What
follows the last blank line (an event cut off) is dropped.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

LINE_END = re.compile(r"\r\n|\r|\n")

__all__ = ["Event", "EventStreamParser", "collect", "events", "parse", "parse_events"]


@dataclass
class Event:
    """One dispatched event. ``id`` is the last event id seen so far (None if never set);
    ``retry`` the reconnection time in ms this event's block set, if any."""

    event: str
    data: str
    id: str | None
    retry: int | None = None


class EventStreamParser:
    """Feed it the stream's bytes (or text) piece by piece; get events and comments back.

    A comment comes back as its whole line, colon included (``": keep-alive"``).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""  # text after the last complete line
        self._after_cr = False  # the last piece ended in CR: an LF first in the next is its pair
        self._started = False  # a BOM is dropped at the very start only
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, piece: bytes | str) -> list[Event | str]:
        """The events and comments this piece completed, in order."""
        text = self._decoder.decode(piece) if isinstance(piece, bytes) else piece
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if not text:
            return []
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = False
        out: list[Event | str] = []
        start = 0
        for end in LINE_END.finditer(text):  # only the new text: a long line stays linear
            self._line(self._pending + text[start : end.start()], out)
            self._pending = ""
            start = end.end()
            # A CR that ends the piece: its LF, if any, comes first in the next piece.
            self._after_cr = end.group() == "\r" and start == len(text)
        self._pending += text[start:]
        return out

    def _line(self, line: str, out: list[Event | str]) -> None:
        if line == "":
            if self._data:
                data = "\n".join(self._data)
                out.append(Event(self._event or "message", data, self._id, self._retry))
            self._event, self._data, self._retry = "", [], None
            return
        if line.startswith(":"):
            out.append(line)
            return
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\x00" not in value:
            self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)


def parse(stream: bytes | str) -> list[Event | str]:
    """A whole event stream, parsed (an event cut off at the end is dropped)."""
    return EventStreamParser().feed(stream)


def parse_events(stream: bytes | str) -> list[Event]:
    """The events of a whole event stream, without its comments."""
    return [item for item in parse(stream) if isinstance(item, Event)]


async def events(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    content_type: str | None = None,
) -> AsyncIterator[Event | str]:
    """GET ``url`` and yield each event, and each comment line as a plain string.

    The response must be a 200 ``text/event-stream`` (exactly ``content_type`` if given).
    """
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        if content_type is not None:
            assert response.headers["content-type"] == content_type
        parser = EventStreamParser()
        async for piece in response.aiter_bytes():
            for item in parser.feed(piece):
                yield item


async def collect(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    content_type: str | None = None,
) -> list[Event]:
    """Every event until the server ends the stream."""
    stream = events(client, url, headers, content_type=content_type)
    return [e async for e in stream if isinstance(e, Event)]

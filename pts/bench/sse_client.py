"""The load side's SSE client: one :class:`asyncio.Protocol` per subscriber, parsed later.

While the benchmark measures, a subscriber only timestamps (``time.monotonic()``)
and stores what ``data_received`` gets: microseconds per event, so thousands
of subscribers in one load process distort no delay. After the run,
:func:`parse_sse_response` decodes the HTTP response (chunked or not) and its
server-sent events, each with the arrival time of the piece that completed
it, and :func:`judge` compares them with the stream's final body.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pts.bench.client import Dechunker, SseParser

__all__ = ["Delivery", "SseResponse", "Subscriber", "judge", "parse_sse_response"]


class Subscriber(asyncio.Protocol):
    """One SSE connection: timestamps and keeps what arrives; parsed after the run."""

    def __init__(self, request: bytes, stream: int) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.stream = stream
        self.chunks: list[tuple[float, bytes]] = []
        self.head: asyncio.Future[int] = loop.create_future()
        """The response's status code once its head arrived; 0 if the connection ended first."""
        self.done: asyncio.Future[None] = loop.create_future()
        """Resolved when the connection is closed."""
        self.transport: asyncio.Transport | None = None
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.monotonic(), data))
        if not self.head.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end >= 0:
                try:
                    status = int(self._head.split(b" ", 2)[1])
                except (IndexError, ValueError):
                    status = 0
                self._head = b""
                self.head.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_result(0)
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class SseResponse:
    """One SSE response, parsed: its status, its events with arrival times, how it ended."""

    status: int
    texts: list[tuple[float, int, bytes]] = field(default_factory=list)
    """``text`` events: (arrival time, ``id`` = end byte offset, data as UTF-8)."""
    statuses: list[dict[str, Any]] = field(default_factory=list)
    """``status`` events' JSON."""
    ended: bool = False
    """The body was complete (the chunked terminator arrived)."""
    error: str | None = None


def parse_sse_response(chunks: Sequence[tuple[float, bytes]]) -> SseResponse:
    """Parse an HTTP response carrying SSE from ``(arrival time, bytes)`` pieces.

    An event's time is the arrival of the piece that completed it (its blank
    line); its ``id`` is its own. Uses the load client's :class:`Dechunker`
    and :class:`SseParser` (the specification's rules: one space after
    ``data:`` dropped).
    """
    head = bytearray()
    i = 0
    body_start = -1
    while i < len(chunks):
        head += chunks[i][1]
        i += 1
        body_start = head.find(b"\r\n\r\n")
        if body_start >= 0:
            break
    if body_start < 0:
        return SseResponse(0, error="no response head")
    status_line, *header_lines = bytes(head[:body_start]).split(b"\r\n")
    try:
        status = int(status_line.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return SseResponse(0, error=f"bad status line {status_line[:80]!r}")
    result = SseResponse(status)
    chunked = any(
        name.strip().lower() == b"transfer-encoding" and value.strip().lower() == b"chunked"
        for name, _, value in (line.partition(b":") for line in header_lines)
    )
    dechunker, parser = Dechunker(), SseParser(keep_space=False)
    pieces = [(chunks[i - 1][0], bytes(head[body_start + 4 :])), *chunks[i:]]
    for arrived, raw in pieces:
        events = parser.feed(dechunker.feed(raw) if chunked else raw)
        for (event, data), event_id in zip(events, parser.ids, strict=True):
            _dispatch(result, arrived, event, data, event_id)
    result.ended = dechunker.done if chunked else True
    return result


def _dispatch(
    result: SseResponse, arrived: float, event: str, data: bytes, event_id: str | None
) -> None:
    if event == "text":
        try:
            end = int(event_id) if event_id is not None else -1
        except ValueError:
            end = -1
        result.texts.append((arrived, end, data))
    elif event == "status":
        try:
            result.statuses.append(json.loads(data))
        except ValueError:
            result.statuses.append({"status": "unparsable", "data": data[:100].decode()})


@dataclass(slots=True)
class Delivery:
    """What one subscriber got, judged against its stream's final body."""

    missing: int = 0
    duplicated: int = 0
    corrupt_events: int = 0
    exact: bool = False
    complete: bool = False
    """It got the final status ``done`` and the whole response."""
    delays: list[float] = field(default_factory=list)


def judge(response: SseResponse, body: bytes, flushes: Sequence[tuple[int, float]]) -> Delivery:
    """Compare a subscriber's ``text`` events with ``body``; its delay for every flush.

    ``flushes`` are the stream's ``(size after the flush, commit time)`` in order.
    """
    out = Delivery()
    position = 0
    received = bytearray()
    for _t, end, data in response.texts:
        received += data
        start = end - len(data)
        if end < 0 or start < 0:
            out.corrupt_events += 1
            continue
        if start > position:
            out.missing += start - position
        elif start < position:
            out.duplicated += min(position, end) - start
        if body[start:end] != data:
            out.corrupt_events += 1
        position = max(position, end)
    if position < len(body):
        out.missing += len(body) - position
    out.exact = bytes(received) == body
    final = response.statuses[-1].get("status") if response.statuses else None
    out.complete = response.ended and final == "done"
    k = 0
    texts = response.texts
    for size, committed in flushes:
        while k < len(texts) and texts[k][1] < size:
            k += 1
        if k == len(texts):
            break
        out.delays.append(texts[k][0] - committed)
    return out

"""The benchmarks' one load client: HTTP/1.1 on asyncio, one chunk decoder, one SSE parser.

- :class:`HttpConnection`: one HTTP/1.1 connection (keep-alive, as real clients
  reuse connections; or ``Connection: close``), whole or streamed responses.
  Its per-chunk cost is a few microseconds, so it distorts no latency figure;
  httpx would.
- :func:`http_request` / :func:`http_json`: one request on a fresh connection,
  timed from before the connect to the first and the last body byte.
- :class:`Dechunker`: the incremental ``Transfer-Encoding: chunked`` decoder,
  for the connection above and for raw bytes stored while measuring.
- :class:`SseParser`: server-sent events from body pieces, as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from pts.testing.process import HOST

REQUEST_GUARD = 120.0
"""Seconds a request may take (a hang guard, far beyond any sane figure)."""

RECEIVE_SIZE = 262_144
"""Bytes asked of the socket per receive (as asyncio's own transports do)."""

HEAD_LIMIT = 65_536
"""Bytes a response head may take (asyncio's StreamReader limit, as before)."""


class BenchError(Exception):
    """The benchmark could not run or produced invalid measurements."""


class Dechunker:
    """Incremental ``Transfer-Encoding: chunked`` decoder: :meth:`feed` the raw pieces."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.remaining = 0
        self.state = "size"
        """``size``, ``data``, ``crlf``, ``trailer``, then ``done`` after the last chunk."""

    @property
    def done(self) -> bool:
        """The terminating chunk and the trailers arrived."""
        return self.state == "done"

    def feed(self, data: bytes) -> bytes:
        """The body bytes ``data`` completes (raises ValueError on a bad chunk size)."""
        buf = self.buffer
        buf += data
        out = bytearray()
        while True:
            if self.state in ("size", "trailer"):
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                line = bytes(buf[:nl])
                del buf[: nl + 2]
                if self.state == "trailer":
                    self.state = "done" if not line else "trailer"
                    if self.done:
                        break
                    continue
                size = int(line.split(b";", 1)[0], 16)
                self.remaining, self.state = size, "data" if size else "trailer"
            elif self.state == "data":
                if not buf:
                    break
                piece = buf[: self.remaining]
                out += piece
                del buf[: len(piece)]
                self.remaining -= len(piece)
                if not self.remaining:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(buf) < 2:
                    break
                del buf[:2]
                self.state = "size"
            else:
                break
        return bytes(out)


class SseParser:
    """Server-sent events from body pieces: ``(event, data)`` per event (data lines joined).

    Lines end with ``\\n`` or ``\\r\\n`` (a pair may straddle two pieces);
    comments and events without ``data`` are skipped. ``keep_space=True`` keeps
    the space after ``data:`` (the Durable Streams protocol writes ``data:``
    with none, and a payload's own leading space must survive); ``False`` drops
    one, as the SSE specification says. After each :meth:`feed`, :attr:`ids`
    holds the ``id`` of each event it returned (None without one).
    """

    def __init__(self, *, keep_space: bool = True) -> None:
        self.keep_space = keep_space
        self.ids: list[str | None] = []
        self._buffer = bytearray()
        self._name = "message"
        self._data: list[bytes] = []
        self._id: str | None = None

    def feed(self, piece: bytes | bytearray) -> list[tuple[str, bytes]]:
        """The events ``piece`` completes."""
        buffer = self._buffer
        buffer += piece
        events: list[tuple[str, bytes]] = []
        self.ids = []
        while (nl := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:nl]).removesuffix(b"\r")
            del buffer[: nl + 1]
            if not line:
                if self._data:
                    events.append((self._name, b"\n".join(self._data)))
                    self.ids.append(self._id)
                self._name, self._data, self._id = "message", [], None
                continue
            name, _, value = line.partition(b":")
            if name != b"data" or not self.keep_space:
                value = value.removeprefix(b" ")
            if name == b"event":
                self._name = value.decode("utf-8", "replace")
            elif name == b"data":
                self._data.append(value)
            elif name == b"id":
                self._id = value.decode("ascii", "replace")
        return events


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A whole response read by :meth:`HttpConnection.request`."""

    status: int
    headers: dict[str, str]
    """Header names lower-cased (a repeated header: its last value)."""
    body: bytes


class HttpConnection:
    """One persistent HTTP/1.1 connection to ``host:port``, one request at a time.

    Connects on first use and again after a response that ends the connection
    (``Connection: close``, a body read to its end of file, a streamed response
    left unfinished). Every request carries ``Content-Length``; responses may be
    chunked, sized or read to EOF. Nothing is retried: a request that fails
    raises (OSError, ``asyncio.IncompleteReadError``) and closes the connection.

    It reads its socket with the event loop's ``sock_recv`` calls, and a sized
    body straight into one buffer of its size (``sock_recv_into``): a catch-up
    read of megabytes is copied once, from the kernel, so the client is not
    what limits the figure (asyncio's StreamReader copied each byte three times
    and paused the socket every 128 KiB).
    """

    def __init__(self, port: int, host: str = HOST) -> None:
        self.host = host
        self.port = port
        self.connects = 0
        """How many TCP connections this object opened."""
        self._socket: socket.socket | None = None
        self._buffer = bytearray()
        """Bytes received and not yet consumed (the rest of a head's segment)."""

    async def __aenter__(self) -> HttpConnection:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection now (else the first request does)."""
        if self._socket is not None and self._closed_by_server():
            # The server closed it while idle (a keep-alive timeout): open another,
            # as real clients do, rather than fail the next request.
            await self.close()
        if self._socket is None:
            loop = asyncio.get_running_loop()
            family, kind, proto, _name, address = (
                await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            )[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
            except BaseException:
                sock.close()
                raise
            self._socket = sock
            self._buffer.clear()
            self.connects += 1

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        sock, self._socket = self._socket, None
        self._buffer.clear()
        if sock is not None:
            sock.close()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Send a request and read its whole response."""
        received: list[bytes | bytearray] = []
        async with self.stream(method, path, headers, body) as (status, response_headers, pieces):
            async for piece in pieces:
                received.append(piece)
        return HttpResponse(status, response_headers, b"".join(received))

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> AsyncIterator[tuple[int, dict[str, str], AsyncIterator[bytes | bytearray]]]:
        """Send a request; yield its status, headers and body pieces as they arrive.

        A sized body is one piece, a bytearray of its length read in place; a
        chunked or unsized one comes as the socket delivers it. For endless
        responses (SSE) too: on exit the connection is closed unless the body
        was read to its end.
        """
        await self._send(method, path, body, headers)
        finished = False
        response_headers: dict[str, str] = {}

        async def pieces() -> AsyncIterator[bytes | bytearray]:
            nonlocal finished
            if method == "HEAD" or status in (204, 304):
                pass
            elif response_headers.get("transfer-encoding", "").lower() == "chunked":
                dechunker = Dechunker()
                while not dechunker.done:
                    raw = await self._read_some()
                    if not raw:
                        raise asyncio.IncompleteReadError(b"", None)
                    if data := dechunker.feed(raw):
                        yield data
            elif "content-length" in response_headers:
                if length := int(response_headers["content-length"]):
                    yield await self._read_exactly(length)
            else:
                while raw := await self._read_some():
                    yield raw
                response_headers["connection"] = "close"
            finished = True

        try:
            status, head = await self._read_head()
            response_headers.update(head)
            yield status, response_headers, pieces()
        finally:
            if not finished or response_headers.get("connection", "").lower() == "close":
                await self.close()

    async def _send(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str] | None
    ) -> None:
        await self.connect()
        assert self._socket is not None
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        try:
            # One write: head and body leave in one segment when they fit.
            await asyncio.get_running_loop().sock_sendall(self._socket, head + body)
        except BaseException:
            await self.close()
            raise

    def _closed_by_server(self) -> bool:
        """The idle connection's socket is at end of file (or broken)."""
        assert self._socket is not None
        if self._buffer:
            return False
        try:
            return not self._socket.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True

    async def _read_some(self) -> bytes:
        """What is buffered, else what the socket delivers next (``b""`` at its end)."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        assert self._socket is not None
        return await asyncio.get_running_loop().sock_recv(self._socket, RECEIVE_SIZE)

    async def _read_exactly(self, length: int) -> bytearray:
        """The next ``length`` bytes, read into one buffer (IncompleteReadError if cut off)."""
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        data = bytearray(length)
        view = memoryview(data)
        got = min(length, len(self._buffer))
        view[:got] = self._buffer[:got]
        del self._buffer[:got]
        while got < length:
            count = await loop.sock_recv_into(self._socket, view[got:])
            if not count:
                raise asyncio.IncompleteReadError(bytes(data[:got]), length)
            got += count
        return data

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        """Status and lower-cased headers of a response (informational 1xx skipped)."""
        while True:
            while (end := self._buffer.find(b"\r\n\r\n")) < 0:
                if len(self._buffer) > HEAD_LIMIT:
                    raise ValueError(f"a response head of over {HEAD_LIMIT:,} bytes")
                more = await self._read_some_more()
                if not more:
                    raise asyncio.IncompleteReadError(bytes(self._buffer), None)
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            status_line, *lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            if status >= 200 or status == 101:
                break
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _read_some_more(self) -> bool:
        """Receive more into the buffer; False at the socket's end."""
        assert self._socket is not None
        data = await asyncio.get_running_loop().sock_recv(self._socket, RECEIVE_SIZE)
        self._buffer += data
        return bool(data)


async def http_request(
    port: int, method: str, path: str, *, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes, float, float, float]:
    """One HTTP/1.1 request on a fresh connection to ``127.0.0.1:port`` (``Connection: close``).

    Returns ``(status, body, start, ttfb, ttlb)``: ``start`` is the
    ``perf_counter`` time before connecting, ``ttfb`` and ``ttlb`` are seconds
    from then to the first and the last body byte.
    """
    start = time.perf_counter()
    first: float | None = None
    body = bytearray()
    async with HttpConnection(port) as conn:
        await conn.connect()
        close = {**(headers or {}), "Connection": "close"}
        async with conn.stream(method, path, close) as (status, _headers, pieces):
            async for piece in pieces:
                if first is None:
                    first = time.perf_counter()
                body += piece
        last = time.perf_counter()
    first = last if first is None else first
    return status, bytes(body), start, first - start, last - start


async def http_json(port: int, method: str, path: str, *, guard: float = REQUEST_GUARD) -> Any:
    """``method path`` answered 2xx with a JSON body (or none); its decoded body.

    Raises BenchError for any other status or after ``guard`` seconds.
    """
    try:
        async with asyncio.timeout(guard):
            status, body, *_ = await http_request(port, method, path)
    except TimeoutError:
        raise BenchError(f"{method} {path} did not answer within {guard:g} s") from None
    if not 200 <= status < 300:
        detail = body[:300].decode("utf-8", "replace")
        raise BenchError(f"{method} {path} answered {status}: {detail}")
    return json.loads(body) if body else None

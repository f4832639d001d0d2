"""The load side of ``pts bench protocol``: Durable Streams requests and the four measurements.

Each measurement runs against one :class:`Peer` (a server's address) on its own
streams, with the load client of :mod:`pts.bench.client`, and checks that every
stream reads back exactly as appended (else BenchError).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from pts.bench.client import BenchError, HttpConnection, SseParser
from pts.bench.common import percentiles
from pts.bench.config import ProtocolConfig
from pts.bench.probes import PostgresCounts

__all__ = ["MEASUREMENTS", "Peer", "filler", "payload"]

DS_PATH = "/v1/stream"
CONTENT_TYPE = "text/plain"
SSE_WARMUP = 3
"""Unmeasured appends before the measured SSE first-event latencies."""
MAX_PAGES = 100_000
"""Most GETs one catch-up read may take (a hang guard)."""
# Hang guards, far beyond any sane figure.
EVENT_GUARD = 30.0
REQUEST_GUARD = 60.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Peer:
    """A Durable Streams server to measure: its address and where its streams live."""

    host: str
    port: int
    streams: str = DS_PATH
    """The path under which its streams are (``/v1/stream`` on pts and the reference)."""

    @classmethod
    def at(cls, url: str) -> Peer:
        """The server at ``url`` (``http://host:port``; a path is put before ``/v1/stream``)."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise BenchError(f"{url!r} is not an http:// URL (https is not supported)")
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/") + DS_PATH)

    def connection(self) -> HttpConnection:
        """A new (not yet connected) keep-alive connection to it."""
        return HttpConnection(self.port, self.host)


# -- protocol requests ---------------------------------------------------------------------


def payload(tag: str, number: int, size: int) -> bytes:
    """``size`` ASCII bytes, distinct per (tag, number), without a newline."""
    head = f"{tag}:{number:08d}:".encode()
    return (head + b"abcdefghijklmnopqrstuvwxyz" * (size // 26 + 1))[:size]


def filler(size: int) -> bytes:
    """``size`` bytes of ASCII text (lines of 64), for the catch-up stream."""
    line = b"".join(bytes([48 + (i * 7) % 75]) for i in range(63)) + b"\n"
    return (line * (size // 64 + 1))[:size]


def _fail(what: str, response_status: int, body: bytes) -> BenchError:
    detail = body[:200].decode("utf-8", "replace")
    return BenchError(f"{what} answered {response_status}: {detail}")


async def create_stream(conn: HttpConnection, path: str) -> None:
    """``PUT path`` (``text/plain``), answered 201 (200 if it existed)."""
    response = await _guarded(conn.request("PUT", path, headers={"Content-Type": CONTENT_TYPE}))
    if response.status not in (200, 201):
        raise _fail(f"PUT {path}", response.status, response.body)


async def append(conn: HttpConnection, path: str, body: bytes) -> None:
    """``POST path`` with ``body``, answered 204 (or 200)."""
    response = await _guarded(conn.request("POST", path, body, {"Content-Type": CONTENT_TYPE}))
    if response.status not in (200, 204):
        raise _fail(f"POST {path}", response.status, response.body)


async def read_all(conn: HttpConnection, path: str) -> tuple[bytes, int]:
    """The stream's bytes from ``offset=-1`` to ``Stream-Up-To-Date``; and the GETs it took."""
    pieces, gets = await catch_up(conn, path)
    return b"".join(pieces), gets


async def catch_up(conn: HttpConnection, path: str) -> tuple[list[bytes | bytearray], int]:
    """The stream from ``offset=-1`` to ``Stream-Up-To-Date``: each GET's body, and the GETs.

    The bodies are kept as received, not joined: a timed catch-up stops its
    clock before joining them (copying megabytes into fresh memory costs about
    a millisecond per MiB on this machine, as much as receiving them).
    """
    offset = "-1"
    bodies: list[bytes | bytearray] = []
    for gets in range(1, MAX_PAGES + 1):
        url = f"{path}?offset={quote(offset, safe='')}"
        status, headers, body = await _guarded(_get(conn, url))
        if status != 200:
            raise _fail(f"GET {url}", status, bytes(body))
        bodies.append(body)
        following = headers.get("stream-next-offset")
        if not following:
            raise BenchError(f"GET {url} answered without Stream-Next-Offset")
        if headers.get("stream-up-to-date", "").lower() == "true":
            return bodies, gets
        if following == offset and not body:
            raise BenchError(f"GET {url} made no progress and is not up to date")
        offset = following
    raise BenchError(f"reading {path} took more than {MAX_PAGES:,} GETs")


async def _get(conn: HttpConnection, url: str) -> tuple[int, dict[str, str], bytes | bytearray]:
    """``GET url``: status, headers and the body as received (one piece when sized)."""
    received: list[bytes | bytearray] = []
    async with conn.stream("GET", url) as (status, headers, pieces):
        async for piece in pieces:
            received.append(piece)
    return status, headers, received[0] if len(received) == 1 else b"".join(received)


async def _guarded(awaitable: Awaitable[T], guard: float = REQUEST_GUARD) -> T:
    try:
        async with asyncio.timeout(guard):
            return await awaitable
    except TimeoutError:
        raise BenchError(f"a request did not complete within {guard:g} s") from None
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise BenchError(f"a malformed or cut-off response: {exc!r}") from None


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(f"invalid measurement: {what}")


# -- the measurements ------------------------------------------------------------------------------


async def sequential(config: ProtocolConfig, peer: Peer, name: str) -> dict[str, Any]:
    """Sequential appends on one keep-alive connection: latency per append."""
    path = f"{peer.streams}/{name}-seq"
    sent = bytearray()
    latencies: list[float] = []
    async with peer.connection() as conn:
        await create_stream(conn, path)
        for i in range(config.warmup + config.appends):
            body = payload("s", i, config.payload)
            start = time.perf_counter()
            await append(conn, path, body)
            elapsed = time.perf_counter() - start
            if i >= config.warmup:
                latencies.append(elapsed)
            sent += body
        back, pages = await read_all(conn, path)
        connects = conn.connects
    _check(back == sent, f"{path} does not read back as appended ({len(back)} != {len(sent)})")
    return {
        "appends": len(latencies),
        "warmup": config.warmup,
        "latency_ms": percentiles(latencies, (50, 90, 99, 99.9), scale=1000),
        "connections": connects,
        "read_back_gets": pages,
    }


async def throughput(
    config: ProtocolConfig, peer: Peer, name: str, counts: PostgresCounts | None = None
) -> dict[str, Any]:
    """``concurrency`` connections appending to as many streams at once: ops/s.

    With ``counts`` (pts), also its database's transactions and NOTIFYs over
    the measured appends alone: read once it is quiet, before and after them.
    """
    paths = [f"{peer.streams}/{name}-tp-{i}" for i in range(config.concurrency)]
    conns = [peer.connection() for _ in paths]
    latencies: list[float] = []
    release = asyncio.Event()

    async def client(conn: HttpConnection, path: str, index: int) -> float:
        await release.wait()
        for j in range(config.concurrent_appends):
            body = payload(f"t{index}", j + 1, config.payload)
            start = time.perf_counter()
            await append(conn, path, body)
            latencies.append(time.perf_counter() - start)
        return time.perf_counter()

    try:
        await asyncio.gather(*(create_stream(c, p) for c, p in zip(conns, paths, strict=True)))
        await asyncio.gather(
            *(
                append(c, p, payload(f"t{i}", 0, config.payload))
                for i, (c, p) in enumerate(zip(conns, paths, strict=True))
            )
        )
        tasks = [
            asyncio.create_task(client(c, p, i))
            for i, (c, p) in enumerate(zip(conns, paths, strict=True))
        ]
        before = await counts.settled() if counts is not None else None
        postgres: dict[str, Any] | None = None
        await asyncio.sleep(0)  # every client waits on the release now
        cpu0, start = time.process_time(), time.perf_counter()
        release.set()
        try:
            ends = await asyncio.gather(*tasks)
        except BaseException:
            # One client failed: stop the others before the connections close.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        elapsed = max(ends) - start
        cpu = time.process_time() - cpu0
        if counts is not None and before is not None:
            appended = config.concurrency * config.concurrent_appends
            postgres = counts.per_append(before, await counts.settled(), appended)
        for i, (conn, path) in enumerate(zip(conns, paths, strict=True)):
            back, _pages = await read_all(conn, path)
            expected = b"".join(
                payload(f"t{i}", j, config.payload) for j in range(config.concurrent_appends + 1)
            )
            _check(back == expected, f"{path} does not read back as appended")
        connects = sum(c.connects for c in conns)
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    total = config.concurrency * config.concurrent_appends
    return {
        "streams": config.concurrency,
        "connections": connects,
        "appends": total,
        "elapsed_s": elapsed,
        "ops_per_s": total / elapsed,
        "latency_ms": percentiles(latencies, (50, 90, 99), scale=1000),
        "client_cpu_pct": 100 * cpu / elapsed,
        **({"postgres": postgres} if postgres is not None else {}),
    }


async def catchup(config: ProtocolConfig, peer: Peer, name: str) -> dict[str, Any]:
    """Reading a ``catchup_bytes`` stream from the start: MB/s per whole read."""
    path = f"{peer.streams}/{name}-catchup"
    content = filler(config.catchup_bytes)
    rates: list[float] = []
    pages: list[int] = []
    async with peer.connection() as conn:
        await create_stream(conn, path)
        fill_start = time.perf_counter()
        for at in range(0, len(content), config.catchup_chunk):
            await append(conn, path, content[at : at + config.catchup_chunk])
        fill = time.perf_counter() - fill_start
        for _ in range(config.catchup_reads):
            start = time.perf_counter()
            pieces, gets = await catch_up(conn, path)
            elapsed = time.perf_counter() - start
            back = b"".join(pieces)
            _check(back == content, f"{path} reads {len(back):,} bytes, not as appended")
            rates.append(len(back) / elapsed / 1e6)
            pages.append(gets)
    return {
        "bytes": len(content),
        "appends": -(-len(content) // config.catchup_chunk),
        "fill_s": fill,
        "reads": len(rates),
        "mb_per_s": percentiles(rates, (50,)),
        "gets_per_read": max(pages),
    }


async def sse(config: ProtocolConfig, peer: Peer, name: str) -> dict[str, Any]:
    """SSE: connect -> first control event; append -> its data event at a connected reader."""
    path = f"{peer.streams}/{name}-sse"
    live = f"{path}?offset=now&live=sse"
    async with peer.connection() as setup:
        await create_stream(setup, path)
    connects = [await _first_control(peer, live) for _ in range(config.sse_connects)]
    async with peer.connection() as writer:
        latencies, received, sent = await _append_to_event(config, peer, live, writer, path)
    _check(received == sent, f"the SSE reader of {path} did not receive exactly what was appended")
    return {
        "connect_to_control_ms": percentiles(connects, (50, 90, 99), scale=1000),
        "append_to_data_ms": percentiles(latencies, (50, 90, 99), scale=1000),
        "events": len(latencies),
        "warmup": SSE_WARMUP,
    }


async def _first_control(peer: Peer, live: str) -> float:
    """Seconds from before the connect to the first control event of a new SSE reader."""
    parser = SseParser()
    conn = peer.connection()
    start = time.perf_counter()
    try:
        async with asyncio.timeout(EVENT_GUARD):
            async with conn.stream("GET", live) as (status, headers, body):
                if status != 200:
                    raise BenchError(f"GET {live} answered {status}")
                _check(
                    headers.get("content-type", "").startswith("text/event-stream"),
                    f"GET {live} is not text/event-stream",
                )
                async for piece in body:
                    if any(event == "control" for event, _ in parser.feed(piece)):
                        return time.perf_counter() - start
        raise BenchError(f"GET {live} ended before its first control event")
    except TimeoutError:
        raise BenchError(f"no control event from {live} within {EVENT_GUARD:g} s") from None
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise BenchError(f"GET {live}: a malformed or cut-off response: {exc!r}") from None
    finally:
        await conn.close()


async def _append_to_event(
    config: ProtocolConfig, peer: Peer, live: str, writer: HttpConnection, path: str
) -> tuple[list[float], bytes, bytes]:
    """Latencies from each append's write to the arrival of its bytes at a live reader."""
    parser = SseParser()
    received = bytearray()
    arrivals: list[tuple[float, int]] = []  # (arrival, bytes received so far)
    changed = asyncio.Event()
    controls = 0
    sent = bytearray()
    latencies: list[float] = []
    reader = peer.connection()
    try:
        async with reader.stream("GET", live) as (status, _headers, body):
            if status != 200:
                raise BenchError(f"GET {live} answered {status}")

            async def read() -> None:
                nonlocal controls
                try:
                    async for piece in body:
                        now = time.perf_counter()
                        for event, data in parser.feed(piece):
                            if event == "data":
                                received.extend(data)
                                arrivals.append((now, len(received)))
                            elif event == "control":
                                controls += 1
                        changed.set()
                finally:
                    changed.set()  # the waiter notices the end at once

            task = asyncio.create_task(read())
            try:

                async def until(condition: Callable[[], bool], what: str) -> None:
                    async with asyncio.timeout(EVENT_GUARD):
                        while not condition():
                            if task.done():
                                raise BenchError(f"the SSE response ended while {what}")
                            await changed.wait()
                            changed.clear()

                def holding(size: int) -> Callable[[], bool]:
                    return lambda: len(received) >= size

                await until(lambda: controls > 0, "waiting for its first control event")
                for i in range(SSE_WARMUP + config.sse_events):
                    chunk = payload("e", i, config.payload)
                    sent += chunk
                    total = len(sent)
                    start = time.perf_counter()
                    await append(writer, path, chunk)
                    await until(holding(total), f"waiting for append {i}")
                    if i >= SSE_WARMUP:
                        arrival = next(t for t, size in arrivals if size >= total)
                        latencies.append(arrival - start)
            except TimeoutError:
                raise BenchError(f"an append's SSE event took over {EVENT_GUARD:g} s") from None
            finally:
                task.cancel()
                # Its own failure (a cut-off response) was reported as the response ending.
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await reader.close()
    return latencies, bytes(received), bytes(sent)


Measurement = Callable[[ProtocolConfig, Peer, str], Awaitable[dict[str, Any]]]
MEASUREMENTS: list[tuple[str, Measurement]] = [
    ("sequential", sequential),
    ("throughput", throughput),
    ("catchup", catchup),
    ("sse", sse),
]

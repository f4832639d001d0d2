"""The server's memory under readers that do not keep up: a real ``pts serve`` process,
real sockets, its resident set size read from ``/proc/<pid>/status``.

- A stalled SSE subscriber (a socket that is never read) on a stream that grows by
  100 MiB must not make the server hold that 100 MiB for it.
- Three clients reading a 100 MiB stream at once (the whole-stream view, the SSE
  catch-up, the protocol catch-up) must not make it hold three copies.

The bound is on the growth of the server's RSS over its own baseline, measured
after a warm-up (the allocator's first arenas are not what is tested).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from pts.http.durable import wire
from pts.store import create_store
from tests.support.fuzz import stream_id_of
from tests.support.servers import HOST, ServerProcess, run_pts_serve

MIB = 1 << 20
GROWTH = 100 * MIB
"""How much the stream grows (or holds) while the readers do not keep up."""
RSS_BOUND = 32 * MIB
"""The most the server's RSS may grow over its baseline while stalled subscribers wait
(measured here without them: about 11 MiB, the append path's own buffers)."""
READERS_BOUND = 64 * MIB
"""The most it may grow while three clients read a large stream at once. One protocol
catch-up alone grows it by about 17 MiB (it holds about twice its 8 MiB page while it
sends one), so three paged readers fit in this; whole-stream reads do not."""
APPEND = 1 * MIB
GUARD = 45.0
"""Seconds any phase may take before the test is declared hung."""

pytestmark = pytest.mark.skipif(
    not __import__("os").path.exists("/proc/self/status"), reason="needs /proc (Linux)"
)


def rss(pid: int) -> int:
    """The resident set size of process ``pid``, in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class PeakRSS:
    """Samples a process's RSS in a thread (every few ms) and keeps the highest."""

    pid: int
    bound: int = RSS_BOUND
    baseline: int = 0
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = rss(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss(self.pid))

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)
        self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def figures(self) -> str:
        return (
            f"server RSS {self.baseline / MIB:.0f} MiB -> peak {self.peak / MIB:.0f} MiB "
            f"(growth {self.growth / MIB:.1f} MiB, bound {self.bound / MIB:.0f} MiB)"
        )


@contextlib.contextmanager
def serve(dsn: str) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    with (
        run_pts_serve(dsn, "--no-auth", "--log-level", "warning") as server,
        httpx.Client(base_url=server.url, timeout=GUARD) as client,
    ):
        yield server, client


def stalled_reader(server: ServerProcess, target: str) -> socket.socket:
    """A client that sends ``GET target``, reads the response's headers, then never reads again.

    Its receive buffer is small, so the kernel holds little for it: what piles up
    for it piles up in the server.
    """
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(GUARD)
    sock.connect((HOST, port))
    sock.sendall(
        f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        part = sock.recv(1)  # byte by byte: read nothing past the headers
        assert part, f"{target}: the server closed the connection"
        head += part
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


class Follower(threading.Thread):
    """An SSE client that reads everything, until ``until`` (an offset) shows up."""

    def __init__(self, base_url: str, target: str, until: bytes) -> None:
        super().__init__(daemon=True)
        self.base_url, self.target, self.until = base_url, target, until
        self.started = threading.Event()
        self.done = False

    def run(self) -> None:
        tail = b""
        with (
            httpx.Client(base_url=self.base_url, timeout=GUARD) as client,
            client.stream("GET", self.target) as response,
        ):
            self.started.set()
            for part in response.iter_raw():
                tail = (tail + part)[-200:]
                if self.until in tail:
                    self.done = True
                    return


def test_a_stalled_subscriber_does_not_pin_what_its_stream_grows_by(db_url: str) -> None:
    text = {"content-type": "text/plain"}
    chunk = (b"0123456789abcdef" * (APPEND // 16))[:APPEND]
    with serve(db_url) as (server, client):
        assert client.put("/v1/stream/growing", headers=text).status_code == 201
        stream_id = stream_id_of(db_url, "growing")
        for _ in range(4):  # warm-up: the append path's own buffers
            assert client.post("/v1/stream/growing", headers=text, content=chunk).is_success
        readers = [
            stalled_reader(server, "/v1/stream/growing?offset=-1&live=sse"),
            stalled_reader(server, f"/streams/{stream_id}/events?offset=0"),
        ]
        final = wire.format_offset(4 * APPEND + GROWTH).encode()
        # A subscriber that keeps up: once it has the last append, the hub has handed it
        # to every subscriber (the stalled ones too).
        follower = Follower(server.url, "/v1/stream/growing?offset=now&live=sse", final)
        try:
            with PeakRSS(server.process.pid) as memory:
                follower.start()
                assert follower.started.wait(GUARD)
                for _ in range(GROWTH // APPEND):
                    appended = client.post("/v1/stream/growing", headers=text, content=chunk)
                    assert appended.status_code == 204, appended.text
                follower.join(GUARD)
                assert follower.done, f"the following subscriber did not see {final!r}"
            assert server.process.poll() is None, server.output()[-3000:]
            print(f"stalled subscribers: {memory.figures()}")
            assert memory.growth < RSS_BOUND, memory.figures()
        finally:
            for reader in readers:
                reader.close()


async def _fill(dsn: str, path: str, size: int) -> None:
    """Write ``size`` bytes of text into a protocol stream straight through the store, then
    close it (faster than as many HTTP requests; the readers are what is measured)."""
    store = create_store(dsn, "asyncpg", min_size=1, max_size=2)
    await store.open()
    try:
        await store.ds_create(path, content_type="text/plain")
        line = b"The quick brown fox jumps over the lazy dog. 0123456789\n"
        chunk = (line * (APPEND // len(line) + 1))[:APPEND]
        for index in range(size // APPEND):
            last = index == size // APPEND - 1
            await store.ds_append(path, chunk, media_type="text/plain", close=last)
    finally:
        await store.close()


def _read_view(client: httpx.Client, stream_id: str) -> int:
    with client.stream("GET", f"/streams/{stream_id}") as response:
        assert response.status_code == 200
        return sum(len(part) for part in response.iter_raw())


def _read_events(client: httpx.Client, stream_id: str) -> int:
    """The SSE catch-up, read until the stream's text has come (then hang up)."""
    received = 0
    with client.stream("GET", f"/streams/{stream_id}/events?offset=0") as response:
        assert response.status_code == 200
        for part in response.iter_raw():
            received += len(part)
            if received >= GROWTH:
                break
    return received


def _read_protocol(client: httpx.Client, path: str) -> int:
    received = 0
    offset = "-1"
    while True:
        response = client.get(f"/v1/stream/{path}", params={"offset": offset})
        assert response.status_code == 200, response.text
        received += len(response.content)
        offset = response.headers["stream-next-offset"]
        if response.headers.get("stream-up-to-date") == "true":
            return received


def test_three_readers_of_a_large_stream_do_not_hold_it_three_times(db_url: str) -> None:
    asyncio.run(_fill(db_url, "large", GROWTH))
    stream_id = str(stream_id_of(db_url, "large"))
    with serve(db_url) as (server, client):
        # Warm-up: one small read of each kind.
        assert client.get("/v1/stream/large", params={"offset": "now"}).status_code == 200
        readers: list[Callable[[httpx.Client], int]] = [
            lambda c: _read_view(c, stream_id),
            lambda c: _read_events(c, stream_id),
            lambda c: _read_protocol(c, "large"),
        ]
        results: list[int | BaseException] = []

        def run(read: Callable[[httpx.Client], int]) -> None:
            try:
                with httpx.Client(base_url=server.url, timeout=GUARD) as own:
                    results.append(read(own))
            except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
                results.append(exc)

        threads = [threading.Thread(target=run, args=(read,), daemon=True) for read in readers]
        with PeakRSS(server.process.pid, READERS_BOUND) as memory:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(GUARD)
        assert all(not thread.is_alive() for thread in threads), "a reader hung"
        assert server.process.poll() is None, server.output()[-3000:]
        for result in results:
            if isinstance(result, BaseException):
                raise result
            assert result >= GROWTH
        print(f"three readers: {memory.figures()}")
        assert memory.growth < READERS_BOUND, memory.figures()

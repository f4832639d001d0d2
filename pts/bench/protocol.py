"""``pts bench protocol``: the Durable Streams protocol over real HTTP, pts vs the reference.

The same client measures, in one run on one machine, ``pts serve`` (its
``/v1/stream`` routes) and the protocol's reference server,
``@durable-streams/server`` on Node.js, started as its authors start it in
their tests: ``new DurableStreamTestServer({port, host: "127.0.0.1"}).start()``
(:file:`reference_server.mjs`; its default store keeps streams in memory;
``reference_store="file"`` adds its file-backed store, which fdatasyncs every
append).

**Servers.** pts: uvicorn, one worker, ``pts.app:create_app`` with
``PTS_NO_AUTH=1`` (what ``pts serve --no-auth`` runs), in a subprocess, on a
fresh ``pts_bench_<random>`` database (dropped at the end), so every append
goes to Postgres. The reference: ``node reference_server.mjs`` in a
subprocess. Both bind 127.0.0.1 on free ports and are always terminated.

**Client.** This process, one asyncio event loop, the minimal HTTP/1.1 client
of :mod:`pts.bench.common` on persistent (keep-alive) connections, one per
concurrent client, as a real client reuses its connection: a TCP connect per
append would measure the kernel, not the servers. Streams are
``text/plain``; every append body is ``payload`` (100) bytes.

**Measurements**, each one per server in turn (pts first), on its own streams:

- *sequential appends*: one connection, ``warmup`` unmeasured ``POST``s, then
  ``appends`` measured ones, each awaited before the next; latency = from the
  request's write to its whole response (204) read. The protocol project's
  criteria: p50 <= 20 ms, p99 <= 100 ms.
- *throughput*: ``concurrency`` connections, each appending ``concurrent_appends``
  times to its own stream (one warm-up append each first), all released at
  once; ops/s = appends / (last response - release). Criterion: >= 1,000 ops/s.
- *catch-up read*: a stream filled with ``catchup_bytes`` in appends of
  ``catchup_chunk`` bytes, then read ``catchup_reads`` times from
  ``offset=-1``, following ``Stream-Next-Offset`` until
  ``Stream-Up-To-Date: true``; MB/s (10^6 bytes) of each whole read.
- *SSE*: **connect -> first control event**: ``sse_connects`` times, a fresh
  connection's ``GET ?offset=now&live=sse``, from before the TCP connect to
  the arrival of its first ``event: control``. **First-event latency**
  (append -> data event): one SSE reader already connected at the tail
  (``offset=now``, its first control event received) while another connection
  appends ``sse_events`` times, each after the previous one arrived; latency =
  from the append request's write to the arrival, at the reader, of the data
  event that completes that append's bytes (the first 3 are warm-up).

**Checks** (a failure is a BenchError, not a figure): every response has the
expected status, and every stream read back (catch-up, SSE, and a read after
the appends) holds exactly the bytes appended, in order.

Everything is bounded in count and time. Nothing here is a test: no figure is
asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from pts.bench.common import (
    STARTUP_GUARD,
    BenchError,
    HttpConnection,
    Progress,
    bench_database,
    bench_server,
    machine,
    percentiles,
    raise_open_files_limit,
    run_benchmark,
    server_info,
    stop_process,
    table,
)
from pts.testing.process import free_port, output_of, spawn

__all__ = [
    "REFERENCE_PACKAGE",
    "REFERENCE_SCRIPT",
    "ProtocolConfig",
    "find_reference_dir",
    "format_report",
    "run_protocol",
]

PTS_APP = "pts.http.app:create_app"
DS_PATH = "/v1/stream"
CONTENT_TYPE = "text/plain"
REFERENCE_PACKAGE = "@durable-streams/server"
REFERENCE_SCRIPT = Path(__file__).resolve().parent / "reference_server.mjs"
"""The Node script that starts the reference server (ships inside the package)."""
CHECKOUT_TESTS = Path(__file__).resolve().parents[2] / "tests"
"""Where ``npm ci --prefix tests`` installs the reference server in a checkout."""

SERVERS = ("both", "pts", "reference")
REFERENCE_STORES = ("memory", "file", "both")

# The protocol project's own criteria (reported, never asserted).
TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
TARGET_OPS = 1000.0

SSE_WARMUP = 3
"""Unmeasured appends before the measured SSE first-event latencies."""
MAX_PAGES = 100_000
"""Most GETs one catch-up read may take (a hang guard)."""
# Hang guards, far beyond any sane figure.
EVENT_GUARD = 30.0
REQUEST_GUARD = 60.0

CLIENT = (
    "this process: one asyncio event loop, a minimal HTTP/1.1 client on keep-alive "
    "connections (one per concurrent client), the same for every server"
)
T = TypeVar("T")

LABELS = {
    "pts": "pts",
    "reference": "reference (memory)",
    "reference-file": "reference (file)",
}


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    """The parameters of one run of ``pts bench protocol``."""

    dsn: str | None = None
    """The Postgres server pts's bench database is created on (needed with pts)."""
    servers: str = "both"
    """``both``, ``pts`` or ``reference``."""
    reference_store: str = "memory"
    """The reference server's store: ``memory`` (its default), ``file`` or ``both``."""
    reference_dir: str | None = None
    """A directory holding ``node_modules/@durable-streams/server`` (default: found)."""
    appends: int = 1000
    warmup: int = 50
    concurrency: int = 75
    concurrent_appends: int = 100
    """Appends per connection (and stream) in the throughput run."""
    catchup_bytes: int = 5_000_000
    catchup_chunk: int = 65_536
    catchup_reads: int = 10
    sse_events: int = 200
    sse_connects: int = 20
    payload: int = 100
    """Bytes per append (sequential, throughput, SSE)."""
    timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.servers not in SERVERS:
            raise ValueError(f"servers must be one of {', '.join(SERVERS)}")
        if self.reference_store not in REFERENCE_STORES:
            raise ValueError(f"reference_store must be one of {', '.join(REFERENCE_STORES)}")
        if "pts" in self.targets and self.dsn is None:
            raise ValueError("measuring pts needs dsn (the Postgres to create its database on)")
        positive = {
            "appends": self.appends,
            "concurrency": self.concurrency,
            "concurrent_appends": self.concurrent_appends,
            "catchup_bytes": self.catchup_bytes,
            "catchup_chunk": self.catchup_chunk,
            "catchup_reads": self.catchup_reads,
            "sse_events": self.sse_events,
            "sse_connects": self.sse_connects,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.warmup < 0:
            raise ValueError("warmup must be at least 0")
        if self.payload < 24:
            raise ValueError("payload must be at least 24 bytes (each carries its number)")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    @property
    def targets(self) -> list[str]:
        """The servers measured, in order: ``pts``, ``reference``, ``reference-file``."""
        names = ["pts"] if self.servers in ("both", "pts") else []
        if self.servers in ("both", "reference"):
            if self.reference_store in ("memory", "both"):
                names.append("reference")
            if self.reference_store in ("file", "both"):
                names.append("reference-file")
        return names

    def parameters(self) -> dict[str, Any]:
        """The parameters as reported (no URL: it may hold a password)."""
        params = asdict(self)
        del params["dsn"]
        return params


# -- finding and running the reference server -------------------------------------------------


def find_reference_dir(given: str | None = None) -> Path:
    """The directory whose ``node_modules`` holds the reference server; BenchError if none.

    ``given``, else the checkout's ``tests/`` (``npm ci --prefix tests``), else
    ``./tests``, else the working directory. Also checks that ``node`` is on PATH.
    """
    if shutil.which("node") is None:
        raise BenchError(
            "the reference server needs Node.js, and `node` is not on PATH: install Node.js "
            "(>= 18), or pass --servers pts to measure pts alone"
        )
    candidates = [Path(given)] if given else [CHECKOUT_TESTS, Path.cwd() / "tests", Path.cwd()]
    for directory in candidates:
        if (directory / "node_modules" / REFERENCE_PACKAGE / "package.json").is_file():
            return directory.resolve()
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise BenchError(
        f"{REFERENCE_PACKAGE} is not installed in {looked}: run `npm ci --prefix tests` in "
        "the pts checkout (tests/package.json pins it), or pass --reference-dir DIR (a "
        f"directory with node_modules/{REFERENCE_PACKAGE}), or --servers pts to measure "
        "pts alone"
    )


@contextlib.asynccontextmanager
async def reference_server(
    packages_dir: Path, data_dir: str | None
) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """``node reference_server.mjs`` in a subprocess; yields its port and what it printed.

    Always terminated on exit: SIGTERM, then SIGKILL, then its process group.
    """
    node = shutil.which("node")
    if node is None:
        raise BenchError("`node` is not on PATH")
    port = free_port()
    command = [node, str(REFERENCE_SCRIPT), str(packages_dir), str(port)]
    if data_dir is not None:
        command.append(data_dir)
    with tempfile.TemporaryFile() as log:
        process = spawn(command, log)
        try:
            info = await _wait_started(process, log)
            yield port, info
        finally:
            stop_process(process)


async def _wait_started(process: subprocess.Popen[bytes], log: Any) -> dict[str, Any]:
    """The JSON line the script prints once it listens."""
    deadline = time.monotonic() + STARTUP_GUARD
    while True:
        if process.poll() is not None:
            raise BenchError(
                f"the reference server exited with code {process.returncode}:\n{output_of(log)}"
            )
        for line in output_of(log).splitlines():
            if line.startswith("{"):
                info: dict[str, Any] = json.loads(line)
                return info
        if time.monotonic() > deadline:
            raise BenchError(
                f"the reference server did not start within {STARTUP_GUARD:g} s:\n{output_of(log)}"
            )
        await asyncio.sleep(0.05)


# -- protocol requests ----------------------------------------------------------------------------


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
    offset = "-1"
    data = bytearray()
    for pages in range(1, MAX_PAGES + 1):
        url = f"{path}?offset={quote(offset, safe='')}"
        response = await _guarded(conn.request("GET", url))
        if response.status != 200:
            raise _fail(f"GET {url}", response.status, response.body)
        data += response.body
        following = response.headers.get("stream-next-offset")
        if not following:
            raise BenchError(f"GET {url} answered without Stream-Next-Offset")
        if response.headers.get("stream-up-to-date", "").lower() == "true":
            return bytes(data), pages
        if following == offset and not response.body:
            raise BenchError(f"GET {url} made no progress and is not up to date")
        offset = following
    raise BenchError(f"reading {path} took more than {MAX_PAGES:,} GETs")


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


class SseParser:
    """Server-sent events from body pieces: ``(event, data)`` per event (data lines joined)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, piece: bytes) -> list[tuple[str, bytes]]:
        """The events ``piece`` completes."""
        self._buffer += piece
        events: list[tuple[str, bytes]] = []
        while True:
            # A CR LF pair may straddle two pieces: normalize only what is complete.
            normal = self._buffer.replace(b"\r\n", b"\n")
            end = normal.find(b"\n\n")
            if end < 0:
                return events
            block, rest = normal[:end], normal[end + 2 :]
            self._buffer = rest
            name, lines = "message", []
            for line in block.split(b"\n"):
                field, _, value = line.partition(b":")
                value = value.removeprefix(b" ") if field == b"event" else value
                if field == b"event":
                    name = value.decode("utf-8", "replace")
                elif field == b"data":
                    # The protocol writes "data:" with no space; the SSE rule of
                    # dropping one leading space must not eat a payload's own.
                    lines.append(value)
            if lines:
                events.append((name, b"\n".join(lines)))


# -- the measurements ------------------------------------------------------------------------------


async def sequential(config: ProtocolConfig, port: int, name: str) -> dict[str, Any]:
    """Sequential appends on one keep-alive connection: latency per append."""
    path = f"{DS_PATH}/{name}-seq"
    sent = bytearray()
    latencies: list[float] = []
    async with HttpConnection(port) as conn:
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


async def throughput(config: ProtocolConfig, port: int, name: str) -> dict[str, Any]:
    """``concurrency`` connections appending to as many streams at once: ops/s."""
    paths = [f"{DS_PATH}/{name}-tp-{i}" for i in range(config.concurrency)]
    conns = [HttpConnection(port) for _ in paths]
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
    }


async def catchup(config: ProtocolConfig, port: int, name: str) -> dict[str, Any]:
    """Reading a ``catchup_bytes`` stream from the start: MB/s per whole read."""
    path = f"{DS_PATH}/{name}-catchup"
    content = filler(config.catchup_bytes)
    rates: list[float] = []
    pages: list[int] = []
    async with HttpConnection(port) as conn:
        await create_stream(conn, path)
        fill_start = time.perf_counter()
        for at in range(0, len(content), config.catchup_chunk):
            await append(conn, path, content[at : at + config.catchup_chunk])
        fill = time.perf_counter() - fill_start
        for _ in range(config.catchup_reads):
            start = time.perf_counter()
            back, gets = await read_all(conn, path)
            elapsed = time.perf_counter() - start
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


async def sse(config: ProtocolConfig, port: int, name: str) -> dict[str, Any]:
    """SSE: connect -> first control event; append -> its data event at a connected reader."""
    path = f"{DS_PATH}/{name}-sse"
    live = f"{path}?offset=now&live=sse"
    async with HttpConnection(port) as setup:
        await create_stream(setup, path)
    connects = [await _first_control(port, live) for _ in range(config.sse_connects)]
    async with HttpConnection(port) as writer:
        latencies, received, sent = await _append_to_event(config, port, live, writer, path)
    _check(received == sent, f"the SSE reader of {path} did not receive exactly what was appended")
    return {
        "connect_to_control_ms": percentiles(connects, (50, 90, 99), scale=1000),
        "append_to_data_ms": percentiles(latencies, (50, 90, 99), scale=1000),
        "events": len(latencies),
        "warmup": SSE_WARMUP,
    }


async def _first_control(port: int, live: str) -> float:
    """Seconds from before the connect to the first control event of a new SSE reader."""
    parser = SseParser()
    conn = HttpConnection(port)
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
    config: ProtocolConfig, port: int, live: str, writer: HttpConnection, path: str
) -> tuple[list[float], bytes, bytes]:
    """Latencies from each append's write to the arrival of its bytes at a live reader."""
    parser = SseParser()
    received = bytearray()
    arrivals: list[tuple[float, int]] = []  # (arrival, bytes received so far)
    changed = asyncio.Event()
    controls = 0
    sent = bytearray()
    latencies: list[float] = []
    reader = HttpConnection(port)
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


Measurement = Callable[[ProtocolConfig, int, str], Awaitable[dict[str, Any]]]
MEASUREMENTS: list[tuple[str, Measurement]] = [
    ("sequential", sequential),
    ("throughput", throughput),
    ("catchup", catchup),
    ("sse", sse),
]


# -- the run ----------------------------------------------------------------------------------


def run_protocol(config: ProtocolConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; return every figure (what ``--json`` writes).

    Raises BenchError if it cannot run (no Node.js or reference package, no
    database), a server answers unexpectedly or loses bytes, ``config.timeout``
    passes or SIGTERM arrives; every server process is stopped and the bench
    database dropped in every case.
    """
    say = progress or (lambda _message: None)
    return run_benchmark(lambda: _run(config, say), config.timeout)


async def _run(config: ProtocolConfig, progress: Progress) -> dict[str, Any]:
    started = time.monotonic()
    targets = config.targets
    packages = (
        find_reference_dir(config.reference_dir)
        if any(t.startswith("reference") for t in targets)
        else None
    )
    raise_open_files_limit()
    run_id = secrets.token_hex(4)
    ports: dict[str, int] = {}
    servers: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {t: {} for t in targets}
    async with asyncio.timeout(config.timeout), contextlib.AsyncExitStack() as stack:
        if "pts" in targets:
            assert config.dsn is not None  # checked by ProtocolConfig
            db = await stack.enter_async_context(bench_database(config.dsn, progress))
            progress(f"starting pts ({PTS_APP}, PTS_NO_AUTH=1) on {db.info['database']}")
            ports["pts"] = await stack.enter_async_context(
                bench_server(db.url, PTS_APP, env={"PTS_NO_AUTH": "1"})
            )
            servers["pts"] = {
                **server_info(PTS_APP),
                "access_control": "none (PTS_NO_AUTH=1, as pts serve --no-auth)",
                "database": {**db.info, "fresh": db.fresh},
            }
        for target in targets:
            if not target.startswith("reference"):
                continue
            assert packages is not None
            data_dir = None
            if target == "reference-file":
                data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pts-ref-"))
            progress(f"starting the reference server ({LABELS[target]}) from {packages}")
            port, info = await stack.enter_async_context(reference_server(packages, data_dir))
            ports[target] = port
            servers[target] = {
                "package": f"{REFERENCE_PACKAGE} {info.get('version')}",
                "node": info.get("node"),
                "store": info.get("store"),
                "started_as": "new DurableStreamTestServer({port, host: '127.0.0.1'"
                + (", dataDir" if data_dir else "")
                + "}).start()",
            }
        for kind, measure in MEASUREMENTS:
            for target in targets:
                progress(f"{kind}: {LABELS[target]}")
                results[target][kind] = await measure(config, ports[target], f"b{run_id}")
    return _results(config, servers, results, time.monotonic() - started)


def _results(
    config: ProtocolConfig,
    servers: dict[str, dict[str, Any]],
    results: dict[str, dict[str, Any]],
    elapsed: float,
) -> dict[str, Any]:
    criteria: dict[str, dict[str, bool]] = {}
    for target, figures in results.items():
        latency = figures["sequential"]["latency_ms"]
        criteria[target] = {
            "p50_met": latency["p50"] <= TARGET_P50_MS,
            "p99_met": latency["p99"] <= TARGET_P99_MS,
            "throughput_met": figures["throughput"]["ops_per_s"] >= TARGET_OPS,
        }
    comparison: dict[str, dict[str, float]] = {}
    if "pts" in results:
        for target in results:
            if target != "pts":
                comparison[target] = {
                    key: _speedup(results["pts"], results[target], key) for key, *_ in ROWS
                }
    return {
        "benchmark": "protocol",
        "machine": machine(),
        "parameters": config.parameters(),
        "servers": servers,
        "client": CLIENT,
        "method": {
            "sequential": "one keep-alive connection; latency = request write -> whole "
            "response read, each append awaited before the next",
            "throughput": f"{config.concurrency} keep-alive connections, one stream each, "
            "released at once; ops/s = appends / (last response - release)",
            "catchup": "GET ?offset=-1 then each Stream-Next-Offset until Stream-Up-To-Date: "
            "true, on one keep-alive connection; MB = 10^6 bytes",
            "sse_first_event": "a reader connected at the tail (offset=now, first control "
            "event received); latency = the append request's write -> arrival at the reader "
            "of the data event completing that append's bytes",
            "sse_connect": "new connection; latency = before the TCP connect -> arrival of "
            "the first control event (offset=now on a stream at its tail)",
        },
        "criteria": {
            "source": "the Durable Streams project's own performance criteria",
            "append_p50_ms_max": TARGET_P50_MS,
            "append_p99_ms_max": TARGET_P99_MS,
            "throughput_ops_min": TARGET_OPS,
            "met": criteria,
        },
        "results": results,
        "pts_speedup": comparison,
        "elapsed_s": elapsed,
    }


# -- the report ------------------------------------------------------------------------------


def _value(figures: dict[str, Any], key: str) -> float:
    kind, *rest = key.split(".")
    node: Any = figures[kind]
    for part in rest:
        node = node[part]
    return float(node)


ROWS: list[tuple[str, str, str, bool]] = [
    # key, label, unit, higher is better
    ("sequential.latency_ms.p50", "append latency p50 (sequential)", "ms", False),
    ("sequential.latency_ms.p99", "append latency p99 (sequential)", "ms", False),
    ("throughput.ops_per_s", "append throughput", "ops/s", True),
    ("throughput.latency_ms.p99", "  its append latency p99", "ms", False),
    ("catchup.mb_per_s.p50", "catch-up read", "MB/s", True),
    ("sse.append_to_data_ms.p50", "SSE first event p50 (append -> event)", "ms", False),
    ("sse.append_to_data_ms.p99", "SSE first event p99", "ms", False),
    ("sse.connect_to_control_ms.p50", "SSE connect -> first control p50", "ms", False),
]


def _speedup(pts: dict[str, Any], other: dict[str, Any], key: str) -> float:
    """How many times better pts is on ``key`` (above 1: pts is better)."""
    higher = next(h for k, _l, _u, h in ROWS if k == key)
    mine, theirs = _value(pts, key), _value(other, key)
    if mine <= 0 or theirs <= 0:
        return float("nan")
    return mine / theirs if higher else theirs / mine


def _cell(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "ops/s":
        return f"{value:,.0f} ops/s"
    return f"{value:,.1f} {unit}"


def _ratio(speedup: float) -> str:
    if speedup != speedup:  # nan
        return "-"
    if speedup >= 1:
        return f"{speedup:.2f}x better"
    return f"{1 / speedup:.2f}x worse"


def format_report(result: dict[str, Any]) -> str:
    """The figures as a readable table, pts next to the reference server."""
    p, m, servers = result["parameters"], result["machine"], result["servers"]
    results, speedup = result["results"], result["pts_speedup"]
    targets = list(results)
    lines = [
        "pts bench protocol: Durable Streams over real HTTP, every server in the same run",
        f"  machine: {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}",
        f"  client:  {result['client']}",
    ]
    if "pts" in servers:
        srv, db = servers["pts"], servers["pts"]["database"]
        lines.append(
            f"  pts:     {srv['runner']} ({srv['loop']}, {srv['http']}), driver {srv['driver']}; "
            f"Postgres {db['server_version']} (fsync {db['fsync']}, synchronous_commit "
            f"{db['synchronous_commit']}), {'fresh' if db['fresh'] else 'shared'} database"
        )
    for target in targets:
        if target != "pts":
            srv = servers[target]
            lines.append(
                f"  {LABELS[target]}: {srv['package']} on Node {srv['node']}, {srv['store']} store"
            )
    lines += [
        f"  {p['payload']}-byte text/plain appends; sequential {p['appends']:,} (+{p['warmup']} "
        f"warm-up); throughput {p['concurrency']} connections x {p['concurrent_appends']} "
        f"appends on {p['concurrency']} streams; catch-up {p['catchup_bytes'] / 1e6:g} MB in "
        f"{p['catchup_chunk']:,}-byte appends, read {p['catchup_reads']}x; SSE "
        f"{p['sse_events']} appends, {p['sse_connects']} connects",
        "",
    ]
    header = ["", *(LABELS[t] for t in targets)]
    header += [f"pts vs {LABELS[t]}" for t in speedup]
    rows = []
    for key, label, unit, _higher in ROWS:
        row = [label, *(_cell(_value(results[t], key), unit) for t in targets)]
        row += [_ratio(speedup[t][key]) for t in speedup]
        rows.append(row)
    lines += table(header, rows)
    criteria = result["criteria"]
    lines.append("")
    lines.append(
        f"  criteria (the protocol project's): append p50 <= {criteria['append_p50_ms_max']:g} "
        f"ms, p99 <= {criteria['append_p99_ms_max']:g} ms, throughput >= "
        f"{criteria['throughput_ops_min']:,.0f} ops/s"
    )
    for target, met in criteria["met"].items():
        missed = [name.removesuffix("_met") for name, ok in met.items() if not ok]
        lines.append(
            f"    {LABELS[target]}: "
            + ("all met" if not missed else "NOT met: " + ", ".join(missed))
        )
    method = result["method"]
    lines += [
        f"  SSE first event = {method['sse_first_event']}",
        f"  SSE connect = {method['sse_connect']}",
        f"  throughput: {method['throughput']}; client CPU "
        + ", ".join(
            f"{LABELS[t]} {results[t]['throughput']['client_cpu_pct']:.0f} %" for t in targets
        )
        + " (of one core)",
        f"  every stream read back exactly as appended; {result['elapsed_s']:.1f} s in all",
    ]
    return "\n".join(lines)

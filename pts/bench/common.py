"""What every ``pts bench`` benchmark needs: a load client, a server process, a database.

- :func:`http_request` / :func:`http_json`: a minimal asyncio HTTP/1.1 client (one
  connection per request, ``Connection: close``). Its per-chunk cost is a few
  microseconds, so it distorts no latency figure; httpx would.
- :class:`HttpConnection`: the same kind of client on one persistent (keep-alive)
  connection, with request bodies and streamed responses, as real clients reuse
  connections.
- :func:`bench_server`: uvicorn serving an app factory in a subprocess (its own
  session) on a free 127.0.0.1 port, always terminated on exit.
- :func:`bench_database`: a fresh ``pts_bench_<random>`` database, migrated, and
  dropped at the end (the given database when it cannot be created).
- :func:`run_benchmark`: runs a benchmark's coroutine bounded in time,
  cancelled (so that it cleans up) on SIGTERM, with its failures as BenchError.
- statistics, machine description, JSON output and table formatting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import resource
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import asyncpg

from pts.database import database_name, with_database
from pts.errors import PTSError
from pts.flush import FlushPolicy
from pts.settings import Settings
from pts.store.migrations import migrate
from pts.testing.process import (
    HOST,
    ServerFailed,
    free_port,
    output_of,
    spawn,
    stop_process,
    wait_healthy,
)

__all__ = [
    "HOST",
    "BenchError",
    "Database",
    "HttpConnection",
    "HttpResponse",
    "Progress",
    "bench_database",
    "bench_server",
    "http_json",
    "http_request",
    "machine",
    "ms",
    "percentiles",
    "raise_open_files_limit",
    "run_benchmark",
    "server_info",
    "stop_process",
    "summarize",
    "table",
    "value_range",
    "write_json",
]

logger = logging.getLogger("pts.bench")

# Hang guards, far beyond any sane figure.
STARTUP_GUARD = 30.0
REQUEST_GUARD = 120.0

Progress: TypeAlias = Callable[[str], None]
T = TypeVar("T")


class BenchError(Exception):
    """The benchmark could not run or produced invalid measurements."""


# -- the HTTP client ------------------------------------------------------------------


async def http_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes, float, float, float]:
    """One HTTP/1.1 request on a fresh connection to ``127.0.0.1:port``.

    Returns ``(status, body, start, ttfb, ttlb)``: ``start`` is the
    ``perf_counter`` time before connecting, ``ttfb`` and ``ttlb`` are seconds
    from then to the first and the last body byte. Reads chunked,
    ``Content-Length`` and read-to-EOF bodies.
    """
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{extra}"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        response_headers: dict[bytes, bytes] = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            response_headers[name.strip().lower()] = value.strip()
        body = bytearray()
        first: float | None = None
        if response_headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                chunk = await reader.readexactly(size + 2)
                if first is None:
                    first = time.perf_counter()
                body += chunk[:-2]
        elif b"content-length" in response_headers:
            length = int(response_headers[b"content-length"])
            if length:
                body += await reader.readexactly(length)
                first = time.perf_counter()
        else:
            body += await reader.read()
            first = time.perf_counter()
        last = time.perf_counter()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
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


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A whole response read by :meth:`HttpConnection.request`."""

    status: int
    headers: dict[str, str]
    """Header names lower-cased (a repeated header: its last value)."""
    body: bytes


class HttpConnection:
    """One persistent HTTP/1.1 connection to ``127.0.0.1:port``, one request at a time.

    Connects on first use and again after a response that ends the connection
    (``Connection: close``, a body read to its end of file, a streamed response
    left unfinished). Every request carries ``Content-Length``; responses may be
    chunked, sized or read to EOF. Nothing is retried: a request that fails
    raises (OSError, ``asyncio.IncompleteReadError``) and closes the connection.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.connects = 0
        """How many TCP connections this object opened."""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> HttpConnection:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection now (else the first request does)."""
        if self._reader is not None and self._reader.at_eof():
            # The server closed it while idle (a keep-alive timeout): open another,
            # as real clients do, rather than fail the next request.
            await self.close()
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
            self.connects += 1

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Send a request and read its whole response."""
        reader = await self._send(method, path, body, headers)
        try:
            status, response_headers = await _read_head(reader)
            data = bytearray()
            if method != "HEAD" and status not in (204, 304) and status >= 200:
                if response_headers.get("transfer-encoding", "").lower() == "chunked":
                    async for chunk in _read_chunks(reader):
                        data += chunk
                elif "content-length" in response_headers:
                    data += await reader.readexactly(int(response_headers["content-length"]))
                else:
                    data += await reader.read()
                    response_headers["connection"] = "close"
        except BaseException:
            await self.close()
            raise
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return HttpResponse(status, response_headers, bytes(data))

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[tuple[int, dict[str, str], AsyncIterator[bytes]]]:
        """Send a request; yield its status, headers and body pieces as they arrive.

        For endless responses (SSE): on exit the connection is closed unless
        the body was read to its end.
        """
        reader = await self._send(method, path, b"", headers)
        finished = False
        response_headers: dict[str, str] = {}

        async def body() -> AsyncIterator[bytes]:
            nonlocal finished
            if response_headers.get("transfer-encoding", "").lower() == "chunked":
                async for chunk in _read_chunks(reader):
                    yield chunk
            else:
                # Sized bodies are read whole; unsized ones until EOF, piece by piece.
                if "content-length" in response_headers:
                    yield await reader.readexactly(int(response_headers["content-length"]))
                else:
                    while piece := await reader.read(65536):
                        yield piece
                    response_headers["connection"] = "close"
            finished = True

        try:
            status, head = await _read_head(reader)
            response_headers.update(head)
            yield status, response_headers, body()
        finally:
            if not finished or response_headers.get("connection", "").lower() == "close":
                await self.close()

    async def _send(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str] | None
    ) -> asyncio.StreamReader:
        await self.connect()
        assert self._reader is not None
        assert self._writer is not None
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        try:
            # One write: head and body leave in one segment when they fit.
            self._writer.write(head + body)
            await self._writer.drain()
        except BaseException:
            await self.close()
            raise
        return self._reader


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a response (informational 1xx skipped)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        if status >= 200 or status == 101:
            break
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The pieces of a chunked body as they arrive; returns after the last chunk."""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return
        chunk = await reader.readexactly(size + 2)
        yield chunk[:-2]


# -- statistics ---------------------------------------------------------------------------


def summarize(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """``n``, ``median``, ``p90``, ``mean``, ``min``, ``max`` of ``values`` times ``scale``."""
    if not values:
        return {"n": 0}
    xs = sorted(v * scale for v in values)
    p90 = xs[0] if len(xs) == 1 else statistics.quantiles(xs, n=10, method="inclusive")[8]
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "p90": p90,
        "mean": statistics.fmean(xs),
        "min": xs[0],
        "max": xs[-1],
    }


def percentiles(
    values: Sequence[float], qs: Sequence[float] = (50, 90, 99, 99.9), scale: float = 1.0
) -> dict[str, float]:
    """``n``, ``min``, ``mean``, ``max`` and ``p<q>`` for each ``q`` (linear interpolation).

    Keys are ``"p50"``, ``"p99"``, ``"p99.9"``...; ``{"n": 0}`` without values.
    """
    if not values:
        return {"n": 0}
    xs = sorted(v * scale for v in values)
    out: dict[str, float] = {"n": len(xs), "min": xs[0], "mean": statistics.fmean(xs)}
    for q in qs:
        rank = (len(xs) - 1) * q / 100
        low = math.floor(rank)
        high = min(low + 1, len(xs) - 1)
        out[f"p{q:g}"] = xs[low] + (xs[high] - xs[low]) * (rank - low)
    out["max"] = xs[-1]
    return out


# -- the database ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Database:
    """The database a benchmark runs in."""

    url: str
    fresh: bool
    """True: created for this run (and dropped after it)."""
    info: dict[str, Any]
    """Server version, fsync, synchronous_commit and the database's name."""


@contextlib.asynccontextmanager
async def bench_database(dsn: str, progress: Progress) -> AsyncIterator[Database]:
    """A fresh ``pts_bench_<random>`` database, migrated; the given one if it cannot be made."""
    name = f"pts_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(dsn, timeout=15)
    try:
        info = {
            "server_version": await admin.fetchval("SHOW server_version"),
            "fsync": await admin.fetchval("SHOW fsync"),
            "synchronous_commit": await admin.fetchval("SHOW synchronous_commit"),
            "max_connections": int(await admin.fetchval("SHOW max_connections")),
        }
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            fresh = True
        except asyncpg.PostgresError as exc:
            progress(f"cannot create a bench database ({exc}); using {database_name(dsn)!r}")
            fresh = False
    finally:
        await admin.close()
    url = with_database(dsn, name) if fresh else dsn
    try:
        await migrate(url)
        info["database"] = name if fresh else database_name(dsn)
        yield Database(url, fresh, info)
    finally:
        if fresh:
            await _drop_database(dsn, name, progress)


async def _drop_database(dsn: str, name: str, progress: Progress) -> None:
    try:
        async with asyncio.timeout(30):
            admin = await asyncpg.connect(dsn, timeout=15)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        progress(f"could not drop the bench database {name!r}: {exc}")


# -- the server process -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_server(
    url: str,
    app_factory: str,
    *,
    env: Mapping[str, str] | None = None,
    backlog: int = 2048,
) -> AsyncIterator[int]:
    """uvicorn serving ``app_factory`` (``module:function``) in a subprocess; yields its port.

    One worker, access log off, ``PTS_DATABASE_URL=url``. Always terminated on
    exit: SIGTERM, then SIGKILL, then its whole process group.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app_factory,
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--lifespan",
        "on",
        "--log-level",
        "warning",
        "--no-access-log",
        "--backlog",
        str(backlog),
        "--timeout-graceful-shutdown",
        "5",
    ]
    with tempfile.TemporaryFile() as log:
        process = spawn(command, log, env={**(env or {}), "PTS_DATABASE_URL": url})
        try:
            try:
                await wait_healthy(process, port, log)
            except ServerFailed as exc:
                raise BenchError(f"the bench server failed: {exc}") from None
            yield port
        finally:
            stop_process(process)
            if process.returncode not in (0, -signal.SIGTERM, None):
                logger.warning("bench server exited %s:\n%s", process.returncode, output_of(log))


# -- running ------------------------------------------------------------------------------------


def run_benchmark(main: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
    """Run ``main()`` in a new event loop; return its result.

    ``main`` bounds itself by ``timeout`` (this only names it in the error).
    Raises BenchError if it times out, fails on the network or the database,
    or SIGTERM arrives (``main`` is cancelled then, so its cleanup runs; on
    Ctrl-C too, which raises KeyboardInterrupt once it is done).
    """
    try:
        return asyncio.run(_until_terminated(main))
    except TimeoutError:
        raise BenchError(f"the benchmark did not finish within {timeout:g} s") from None
    except asyncio.CancelledError:
        raise BenchError("the benchmark was terminated") from None
    except (OSError, asyncpg.PostgresError, PTSError) as exc:
        raise BenchError(str(exc) or type(exc).__name__) from exc


async def _until_terminated(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``main()``, cancelled on SIGTERM."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
        return await main()
    try:
        return await main()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def raise_open_files_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


# -- describing the run -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPUs, Python and platform of this machine."""
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity(0)) if affinity is not None else os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def server_info(app_factory: str) -> dict[str, Any]:
    """How :func:`bench_server` runs ``app_factory``: uvicorn, loop, HTTP parser, pool, flush."""
    import uvicorn

    settings = Settings.from_env()
    policy = FlushPolicy()
    return {
        "runner": f"uvicorn {uvicorn.__version__} in a subprocess, 1 worker, access log off",
        "app": app_factory,
        "loop": "uvloop" if _has("uvloop") else "asyncio",
        "http": "httptools" if _has("httptools") else "h11",
        "driver": settings.driver,
        "pool_max_size": settings.pool_max_size,
        "flush_policy": {"max_bytes": policy.max_bytes, "max_delay": policy.max_delay},
    }


def write_json(path: str, result: Mapping[str, Any]) -> None:
    """Write ``result`` as indented JSON to ``path``."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump(result, out, indent=2)
        out.write("\n")


def ms(value: float) -> str:
    """``1,234.57 ms``."""
    return f"{value:,.2f} ms"


def value_range(stats: Mapping[str, float]) -> str:
    """``median [min-max]`` of a :func:`summarize` result."""
    return f"{stats['median']:g} [{stats['min']:g}-{stats['max']:g}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a plain table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        cells = [row[0].ljust(widths[0]), *rest]
        lines.append("  " + "   ".join(cells).rstrip())
    return lines

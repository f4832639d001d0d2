"""``pts bench growth``: how pts's figures move as the work grows, a table per kind of growth.

Each part (each level of the table-size part) runs on its own fresh
``pts_bench_<random>`` database (dropped at the end) with its own ``pts serve
--no-auth`` (one worker) in a subprocess, and measures over real HTTP with
the load client of :mod:`pts.bench.client` on keep-alive connections (the
Durable Streams routes, ``payload``-byte ``text/plain`` appends), as ``pts
bench protocol`` does:

- *streams*: the appends spread over ``stream_counts`` streams (10, 1,000,
  10,000; created over HTTP, cumulative): ``sequential_appends`` on one
  connection (latency p50/p99), then ``appends`` from ``concurrency``
  connections at once (appends/s and their p99).
- *stream size*: a stream per level of ``stream_appends`` (1,000 to 100,000),
  filled by one bulk statement with as many chunk rows as that many appends
  write (``bench_grow_stream`` in ``sql/bench.sql``), then read while open:
  its tail (``GET ?offset=<size - payload>``, ``tail_reads`` times) and a
  whole catch-up from ``offset=-1`` (MB/s, ``catchup_reads`` times); then
  closed, compacted (:func:`compact`) and read again.
- *table size*: one stream of ``table_rows[0]`` rows, its tail read beside
  tables of each level of ``table_rows`` (to 1,000,000 rows; rows of other
  streams, ``bench_fill_streams``, then ``VACUUM (ANALYZE)``), a database and
  server per level, all read in turns.

Every read is checked against the bytes written (else BenchError); every part
is bounded in count, and the run by ``timeout``. Nothing here is a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from pts.bench.client import BenchError, HttpConnection
from pts.bench.common import (
    Progress,
    bench_database,
    bench_queries,
    machine,
    percentiles,
    pts_serve,
    raise_open_files_limit,
    run_benchmark,
)
from pts.bench.config import GrowthConfig
from pts.bench.protocol_load import (
    CONTENT_TYPE,
    Peer,
    append,
    catch_up,
    create_stream,
    payload,
    read_all,
)
from pts.http.durable.wire import format_offset
from pts.store import Store, create_store
from pts.testing.process import HOST

__all__ = ["GrowthConfig", "compact", "run_growth"]

FILL_ROWS = 1000
"""Chunk rows per filler stream of the table-size part."""
FILL_BATCH = 200_000
"""Most rows one fill statement inserts (a statement's time stays bounded)."""
CHECKED_STREAMS = 20
"""Streams of the streams part read back and checked (evenly chosen)."""
TAIL_ROUNDS = 10
"""Turns the table-size part's tail reads take round its databases."""
TAIL_WARMUP = 20
"""Untimed tail reads on each of its databases first (caches, prepared statements)."""
T = TypeVar("T")


async def compact(store: Store, stream_id: uuid.UUID) -> int:
    """Chunk rows removed by compacting the (finished) stream (:meth:`Store.compact`)."""
    return await store.compact(stream_id)


# -- the server of one part -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Site:
    """A part's pts server, its database and the bench's own ways into that database."""

    peer: Peer
    store: Store
    sql: asyncpg.Connection[Any]
    """For the queries of ``sql/bench.sql``."""
    run: str

    async def query(self, name: str, *args: Any) -> Any:
        """The first value of the bench query ``name``."""
        return await self.sql.fetchval(bench_queries()[name], *args)

    def path(self, name: str) -> str:
        return f"{self.peer.streams}/g{self.run}-{name}"

    async def stream_id(self, path: str) -> uuid.UUID:
        info = await self.store.get_stream_by_path(path.removeprefix(self.peer.streams + "/"))
        return info.id


@contextlib.asynccontextmanager
async def _site(config: GrowthConfig, progress: Progress) -> AsyncIterator[Site]:
    async with bench_database(config.dsn, progress) as db:
        progress(f"starting pts serve --no-auth on {db.info['database']}")
        async with pts_serve(db.url) as port:
            store = create_store(db.url, "asyncpg", min_size=1, max_size=2)
            await store.open()
            sql = await asyncpg.connect(db.url, timeout=15)
            try:
                yield Site(Peer(HOST, port), store, sql, secrets.token_hex(4))
            finally:
                await sql.close(timeout=5)
                await store.close()


async def _spread(
    conns: Sequence[HttpConnection], count: int, work: Callable[[HttpConnection, int], Awaitable[T]]
) -> tuple[list[float], float]:
    """``work(conn, i)`` for i in 0..count-1, the connections taking turns as each is free:
    the seconds of each call, and of them all."""
    items = iter(range(count))
    latencies: list[float] = []

    async def worker(conn: HttpConnection) -> None:
        for i in items:
            start = time.perf_counter()
            await work(conn, i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return latencies, time.perf_counter() - start


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(f"invalid measurement: {what}")


# -- the parts -----------------------------------------------------------------------------


async def _streams(config: GrowthConfig, site: Site, progress: Progress) -> list[dict[str, Any]]:
    """Sequential and concurrent appends spread over more and more streams."""
    conns = [site.peer.connection() for _ in range(config.concurrency)]
    paths: list[str] = []
    sent: dict[int, list[bytes]] = {}
    levels = []
    serial = 0

    async def appending(conn: HttpConnection, index: int) -> None:
        nonlocal serial
        serial += 1
        body = payload("a", serial, config.payload)
        sent.setdefault(index, []).append(body)
        await append(conn, paths[index], body)

    def creating(first: int) -> Callable[[HttpConnection, int], Awaitable[None]]:
        return lambda conn, i: create_stream(conn, paths[first + i])

    def spread(total: int) -> Callable[[HttpConnection, int], Awaitable[None]]:
        """Append i of ``total`` to a stream: evenly over them all, round after round."""
        n = len(paths)
        return lambda conn, i: appending(conn, i % n if total >= n else i * n // total)

    try:
        for level in config.stream_counts:
            progress(f"streams: creating {level - len(paths):,} streams (to {level:,})")
            first = len(paths)
            paths += [site.path(f"s{i}") for i in range(first, level)]
            await _spread(conns, level - first, creating(first))
            progress(f"streams: appends over {level:,} streams")
            n, m = config.sequential_appends, config.appends
            sequential, _ = await _spread(conns[:1], n, spread(n))
            concurrent, elapsed = await _spread(conns, m, spread(m))
            levels.append(
                {
                    "streams": level,
                    "sequential_ms": percentiles(sequential, (50, 99), scale=1000),
                    "concurrent_ms": percentiles(concurrent, (50, 99), scale=1000),
                    "ops_per_s": m / elapsed,
                }
            )
        # Appends to one stream from several connections interleave: compare as multisets.
        step = max(1, len(paths) // CHECKED_STREAMS)
        for index in range(0, len(paths), step):
            back, _ = await read_all(conns[0], paths[index])
            pieces = [back[i : i + config.payload] for i in range(0, len(back), config.payload)]
            _check(sorted(pieces) == sorted(sent.get(index, [])), f"{paths[index]} reads back")
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return levels


async def _reads(
    config: GrowthConfig, conn: HttpConnection, path: str, expected: bytes
) -> dict[str, Any]:
    """Tail reads (the last ``payload`` bytes) and whole catch-up reads of one stream."""
    url = f"{path}?offset={format_offset(len(expected) - config.payload)}"
    tails = await _tail_reads(conn, url, expected[-config.payload :], config.tail_reads)
    rates, gets = [], 0
    for _ in range(config.catchup_reads):
        start = time.perf_counter()
        pieces, gets = await catch_up(conn, path)
        elapsed = time.perf_counter() - start
        back = b"".join(pieces)
        rates.append(len(back) / elapsed / 1e6)
        _check(back == expected, f"{path} reads {len(back):,} bytes, not as written")
    return {
        "tail_ms": percentiles(tails, (50, 99), scale=1000),
        "catchup_mb_per_s": percentiles(rates, (50,)),
        "gets_per_catchup": gets,
    }


async def _tail_reads(conn: HttpConnection, url: str, tail: bytes, count: int) -> list[float]:
    """``count`` GETs of ``url``, each checked to answer ``tail``: their seconds."""
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        response = await conn.request("GET", url)
        seconds.append(time.perf_counter() - start)
        _check(response.status == 200, f"GET {url} answered {response.status}")
        _check(response.body == tail, f"{url} is not the stream's tail")
    return seconds


async def _grow(site: Site, path: str, rows: int, config: GrowthConfig) -> tuple[uuid.UUID, bytes]:
    """Fill the (new, empty) stream at ``path`` with ``rows`` rows; its id and bytes."""
    stream_id = await site.stream_id(path)
    tail = payload("g", 0, config.payload - 10)
    size = await site.query("bench_grow_stream", stream_id, rows, tail)
    expected = b"".join(b"%010d%s" % (g, tail) for g in range(1, rows + 1))
    _check(size == len(expected), f"{path} holds {size} bytes, not {len(expected)}")
    return stream_id, expected


async def _stream_size(
    config: GrowthConfig, site: Site, progress: Progress
) -> list[dict[str, Any]]:
    """A stream per size: its tail and catch-up reads, open, then closed and compacted."""
    levels = []
    async with site.peer.connection() as conn:
        for level in config.stream_appends:
            progress(f"stream size: {level:,} appends")
            path = site.path(f"size{level}")
            await create_stream(conn, path)
            stream_id, expected = await _grow(site, path, level, config)
            figures: dict[str, Any] = {"appends": level, "bytes": len(expected)}
            figures["open"] = await _reads(config, conn, path, expected)
            figures["open"]["rows"] = await site.query("bench_stream_rows", stream_id)
            closing = {"Stream-Closed": "true", "Content-Type": CONTENT_TYPE}
            response = await conn.request("POST", path, b"", closing)
            _check(response.status in (200, 204), f"closing {path} answered {response.status}")
            figures["removed_rows"] = removed = await compact(site.store, stream_id)
            if removed is not None:
                figures["compacted"] = await _reads(config, conn, path, expected)
                figures["compacted"]["rows"] = await site.query("bench_stream_rows", stream_id)
            levels.append(figures)
    return levels


async def _table_size(config: GrowthConfig, progress: Progress) -> list[dict[str, Any]]:
    """One stream's tail read beside tables of each size, read in turns.

    A database (and server) per level of ``table_rows``, all up at once: the
    same stream of ``table_rows[0]`` rows in each, the table filled to the
    level with other streams' rows, then ``VACUUM (ANALYZE)`` (what autovacuum
    does soon after a table grows, done before the clock starts rather than
    during it). The reads then go round the levels, ``TAIL_ROUNDS`` rounds of
    a share of ``tail_reads`` each, so that the machine's drift over the run
    (a few tenths of a millisecond here) falls on every level alike.
    """
    async with contextlib.AsyncExitStack() as stack:
        sites = [
            await stack.enter_async_context(_site(config, progress)) for _ in config.table_rows
        ]
        conns = [await stack.enter_async_context(site.peer.connection()) for site in sites]
        targets = []
        for site, conn, level in zip(sites, conns, config.table_rows, strict=True):
            path = site.path("tail")
            await create_stream(conn, path)
            _, expected = await _grow(site, path, config.table_rows[0], config)
            await _fill_table(site, level, config, progress)
            url = f"{path}?offset={format_offset(len(expected) - config.payload)}"
            targets.append((url, expected[-config.payload :]))
            await _tail_reads(conn, url, targets[-1][1], TAIL_WARMUP)
        progress(f"table size: {config.tail_reads:,} tail reads per level, in turns")
        timings: list[list[float]] = [[] for _ in sites]
        share = -(-config.tail_reads // TAIL_ROUNDS)
        while len(timings[-1]) < config.tail_reads:
            count = min(share, config.tail_reads - len(timings[-1]))
            for times, conn, (url, tail) in zip(timings, conns, targets, strict=True):
                times += await _tail_reads(conn, url, tail, count)
        return [
            {
                "tail_ms": percentiles(times, (50, 99), scale=1000),
                "table_rows": int(await site.query("bench_table_rows")),
            }
            for site, times in zip(sites, timings, strict=True)
        ]


async def _fill_table(site: Site, level: int, config: GrowthConfig, progress: Progress) -> None:
    """Other streams' rows until ``pts.chunks`` holds ``level`` rows; then VACUUM (ANALYZE)."""
    filler = payload("f", 0, config.payload)
    batch = 0
    while (missing := level - int(await site.query("bench_table_rows"))) > 0:
        progress(f"table size: filling {missing:,} rows (to {level:,})")
        rows = min(missing, FILL_ROWS)
        streams = max(1, min(missing, FILL_BATCH) // rows)
        batch += 1
        await site.query("bench_fill_streams", streams, rows, f"g{site.run}-fill{batch}-", filler)
    await site.query("bench_settle_chunks")


# -- the run ------------------------------------------------------------------------------------


def run_growth(config: GrowthConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; return every figure (what ``--json`` writes).

    Raises BenchError if it cannot run, a server answers unexpectedly or a read
    differs from what was written, ``config.timeout`` passes or SIGTERM
    arrives; every server is stopped and every bench database dropped.
    """
    say = progress or (lambda _message: None)
    return run_benchmark(lambda: _run(config, say), config.timeout)


async def _run(config: GrowthConfig, progress: Progress) -> dict[str, Any]:
    started = time.monotonic()
    raise_open_files_limit()
    parts: dict[str, Any] = {}
    async with asyncio.timeout(config.timeout):
        for name, part in (("streams", _streams), ("stream_size", _stream_size)):
            async with _site(config, progress) as site:
                parts[name] = await part(config, site, progress)
        parts["table_size"] = await _table_size(config, progress)
    return {
        "benchmark": "growth",
        "machine": machine(),
        "parameters": config.parameters(),
        "server": "pts serve --no-auth (1 worker) in a subprocess, a fresh database per part",
        "compaction": any(level["removed_rows"] is not None for level in parts["stream_size"]),
        **parts,
        "elapsed_s": time.monotonic() - started,
    }

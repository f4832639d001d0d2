"""One step of ``pts bench fanout``: ``count`` subscribers on new streams, measured.

The subscribers connect (at most ``CONNECT_CONCURRENCY`` at once), the server
must hold every one of them (its ``pts.stats()``) before production starts,
then each subscriber's response is parsed and judged against the stream's
final body (read through the store).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pts.bench.client import BenchError, http_json
from pts.bench.common import Database, Progress, percentiles, summarize
from pts.bench.config import FanoutConfig, stream_tokens
from pts.bench.probes import CommitClock, Samples, machine_cpu
from pts.bench.sse_client import Subscriber, judge, parse_sse_response
from pts.store import SQLStore
from pts.testing.process import HOST

__all__ = ["Context", "measure_step"]

CONNECT_CONCURRENCY = 100
"""Connections being opened at once (the server's accept backlog is 4096)."""
# Hang guards, far beyond any sane figure.
CONNECT_GUARD = 180.0
SETTLE_GUARD = 30.0


@dataclass
class Context:
    """What every step of a run shares."""

    config: FanoutConfig
    db: Database
    port: int
    clock: CommitClock
    samples: Samples
    store: SQLStore
    deadline: float
    load_nofile: int
    pool_max: int | None = None
    server_nofile: int | None = None
    poll_interval: float | None = None
    streams_made: int = 0


def _request(stream_id: uuid.UUID, port: int) -> bytes:
    return (
        f"GET /streams/{stream_id}/events HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


async def _connect(
    ctx: Context, ids: Sequence[uuid.UUID], count: int, subscribers: list[Subscriber]
) -> None:
    """Open ``count`` SSE subscriptions, round-robin over ``ids``, into ``subscribers``."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    requests = [_request(stream_id, ctx.port) for stream_id in ids]

    async def one(k: int) -> None:
        async with gate:
            sub = Subscriber(requests[k % len(ids)], k % len(ids))
            subscribers.append(sub)
            await loop.create_connection(lambda: sub, HOST, ctx.port)
            status = await sub.head
            if status != 200:
                raise BenchError(f"subscriber {k}: GET /streams/{{id}}/events answered {status}")

    tasks = [asyncio.create_task(one(k)) for k in range(count)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _await_server_subscribers(
    ctx: Context, ids: Sequence[uuid.UUID], count: int
) -> dict[str, Any]:
    """Metrics once the server holds all ``count`` subscribers (bounded; its pts.stats())."""
    deadline = time.monotonic() + SETTLE_GUARD
    while True:
        metrics: dict[str, Any] = await http_json(ctx.port, "GET", "/bench/metrics?reset_max=true")
        if metrics["subscribers"] == count:
            return metrics
        if time.monotonic() > deadline:
            got = metrics["subscribers"]
            raise BenchError(f"the server has {got} of {count} subscribers after connecting")
        await asyncio.sleep(0.05)


async def _await_server_idle(ctx: Context) -> None:
    """Wait (bounded) until the server holds no subscriber: the last step's are gone."""
    deadline = time.monotonic() + SETTLE_GUARD
    while True:
        metrics = await http_json(ctx.port, "GET", "/bench/metrics")
        if not metrics["subscribers"] or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


async def _bodies(ctx: Context, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    """Each stream's final body, read through the store."""
    bodies = {}
    for stream_id in ids:
        body = bytearray()
        while True:
            page = await ctx.store.read(stream_id, len(body))
            body += page.data
            if page.up_to_date or not page.data:
                break
        bodies[stream_id] = bytes(body)
    return bodies


async def measure_step(ctx: Context, count: int, progress: Progress) -> dict[str, Any]:
    """One run with ``count`` subscribers over ``config.streams`` new streams."""
    config = ctx.config
    await _await_server_idle(ctx)
    created = await http_json(ctx.port, "POST", f"/bench/streams?count={config.streams}")
    ids = [uuid.UUID(i) for i in created["ids"]]
    first_index = ctx.streams_made
    ctx.streams_made += len(ids)
    expected = {
        sid: "".join(
            stream_tokens(first_index + k, config.sentences, config.tokens_per_sentence)
        ).encode()
        for k, sid in enumerate(ids)
    }
    ctx.clock.track(ids)
    subscribers: list[Subscriber] = []
    try:
        progress(f"  {count:,} subscribers: connecting ({count // len(ids):,} per stream)")
        t_connect = time.monotonic()
        m_before_connect = await http_json(ctx.port, "GET", "/bench/metrics")
        try:
            async with asyncio.timeout(CONNECT_GUARD) as connecting:
                await _connect(ctx, ids, count, subscribers)
                m0 = await _await_server_subscribers(ctx, ids, count)
        except TimeoutError:
            if not connecting.expired():
                raise
            raise BenchError(
                f"connecting {count} subscribers took longer than {CONNECT_GUARD:g} s"
            ) from None
        connect_s = time.monotonic() - t_connect
        progress(
            f"  {count:,} subscribers: connected in {connect_s:.1f} s; producing "
            f"(~{config.production_s:.1f} s)"
        )
        cpu0, load0, machine0 = m0["cpu_s"], time.process_time(), machine_cpu()
        t_start = time.monotonic()
        query = (
            f"sentences={config.sentences}&tokens_per_sentence={config.tokens_per_sentence}"
            f"&pace={config.pace!r}&seed={config.seed + first_index}"
        )
        await http_json(ctx.port, "POST", f"/bench/produce?{query}")
        guard = config.production_s * 3 + 60
        try:
            async with asyncio.timeout(guard) as producing:
                await ctx.clock.wait_closed(ids)
                t_closed = time.monotonic()
                await asyncio.gather(*(sub.done for sub in subscribers))
        except TimeoutError:
            if not producing.expired():
                raise
            open_ = sum(1 for sub in subscribers if not sub.done.done())
            message = f"after {guard:.0f} s, {open_} subscription(s) were still open"
            raise BenchError(f"{count} subscribers: {message}") from None
        t_end = time.monotonic()
        # A NOTIFY can come before its producer counts the append: wait for the producers.
        async with asyncio.timeout(10):
            while (m1 := await http_json(ctx.port, "GET", "/bench/metrics"))["producing"]:
                await asyncio.sleep(0.01)
        cpu1, load1, machine1 = m1["cpu_s"], time.process_time(), machine_cpu()
    finally:
        for sub in subscribers:
            sub.close()
    bodies = await _bodies(ctx, ids)
    progress(f"  {count:,} subscribers: done; checking {count:,} responses")

    deliveries = []
    for sub in subscribers:
        stream_id = ids[sub.stream]
        response = parse_sse_response(sub.chunks)
        sub.chunks = []
        flushes_of = ctx.clock.flushes(stream_id)
        deliveries.append(judge(response, bodies.get(stream_id, b""), flushes_of))
    delays = [d for delivery in deliveries for d in delivery.delays]
    # Per flush (a stream's j-th): its first and its last subscriber's delay.
    extremes: dict[tuple[int, int], tuple[float, float]] = {}
    for sub, delivery in zip(subscribers, deliveries, strict=True):
        for j, d in enumerate(delivery.delays):
            low, high = extremes.get((sub.stream, j), (d, d))
            extremes[sub.stream, j] = (min(low, d), max(high, d))

    appends = {sid: int(m1["appends"].get(str(sid), 0)) for sid in ids}
    # A stream's reads while producing: its tail's, and its subscribers' own (re-reads
    # after poll_interval of silence, normally none): per stream, only the total is seen.
    stream_reads = {
        sid: m1["reads_per_stream"].get(str(sid), 0) - m0["reads_per_stream"].get(str(sid), 0)
        for sid in ids
    }
    flushes = sum(appends.values())
    gc0, gc1 = m0["gc"], m1["gc"]
    hub_reads = m1["tail_reads"] - m0["tail_reads"]
    production = ctx.samples.connections_between(t_start, t_end)
    everything = ctx.samples.connections_between(t_connect, t_end)
    wall = t_end - t_start
    machine_pct = None
    if machine0 is not None and machine1 is not None and machine1[1] > machine0[1]:
        machine_pct = 100 * (machine1[0] - machine0[0]) / (machine1[1] - machine0[1])
    lags = ctx.samples.lag_between(t_start, t_end)
    limit = None if ctx.pool_max is None else ctx.pool_max + 1
    conn_max = max((s[1] for s in everything), default=0)
    return {
        "subscribers": count,
        "streams": len(ids),
        "per_stream": count / len(ids),
        "delay_ms": percentiles(delays, scale=1000),
        "delay_samples": len(delays),
        "per_flush_ms": {
            "first_subscriber": percentiles([e[0] for e in extremes.values()], (50, 99), 1000),
            "last_subscriber": percentiles([e[1] for e in extremes.values()], (50, 99), 1000),
            "spread": percentiles([e[1] - e[0] for e in extremes.values()], (50, 99), 1000),
        },
        "delay_samples_expected": sum(
            len(ctx.clock.flushes(ids[sub.stream])) for sub in subscribers
        ),
        "subscribers_complete": sum(1 for d in deliveries if d.complete),
        "subscribers_exact": sum(1 for d in deliveries if d.exact),
        "missing_bytes": sum(d.missing for d in deliveries),
        "duplicated_bytes": sum(d.duplicated for d in deliveries),
        "corrupt_events": sum(d.corrupt_events for d in deliveries),
        "max_missing_per_subscriber": max((d.missing for d in deliveries), default=0),
        "max_duplicated_per_subscriber": max((d.duplicated for d in deliveries), default=0),
        "bodies_as_written": sum(1 for sid in ids if bodies.get(sid) == expected[sid]),
        "final_status": sorted({n.status if (n := ctx.clock.closed(sid)) else "?" for sid in ids}),
        "producer_failures": m1["failures"],
        "bytes_per_stream": summarize([len(b) for b in expected.values()]),
        "flushes": flushes,
        "flushes_per_stream": summarize(list(appends.values())),
        "notifications": sum(n.size > 0 or n.closed for sid in ids for n in ctx.clock.notes[sid]),
        "reads": {
            "tail": hub_reads,
            "per_flush": hub_reads / flushes if flushes else None,
            "per_flush_per_stream_max": max(
                (stream_reads[sid] / appends[sid] for sid in ids if appends[sid]), default=None
            ),
            "by_subscribers_during_production": (m1["store_reads"] - m0["store_reads"]) - hub_reads,
            "while_connecting": m0["store_reads"] - m_before_connect["store_reads"],
        },
        "connections": {
            "pool_max": ctx.pool_max,
            "limit": limit,
            "open_min": min((s[1] for s in production), default=0),
            "open_max": max((s[1] for s in production), default=0),
            "open_max_incl_connecting": conn_max,
            "active_max": max((s[2] for s in production), default=0),
            "samples": len(production),
            # The server's connections less its LISTEN one, as Postgres last saw them.
            "server_pool_size": production[-1][1] - 1 if production else None,
            "met": limit is not None and conn_max <= limit,
        },
        "cpu_pct": {
            "server": 100 * (cpu1 - cpu0) / wall,
            "load": 100 * (load1 - load0) / wall,
            "machine": machine_pct,
        },
        "load_loop_lag_ms": percentiles(lags, (50, 99), scale=1000),
        "server_gc": {
            "collections": [
                b - a for a, b in zip(gc0["collections"], gc1["collections"], strict=True)
            ],
            "pause_ms": [
                1000 * (b - a) for a, b in zip(gc0["pause_s"], gc1["pause_s"], strict=True)
            ],
            "max_pause_ms": [1000 * v for v in gc1["max_pause_s"]],
        },
        "server_cpu_us_per_delivery": 1e6 * (cpu1 - cpu0) / len(delays) if delays else None,
        "server_rss_mb": m1["max_rss_mb"],
        "connect_s": connect_s,
        "production_s": t_closed - t_start,
        "drain_s": t_end - t_closed,
    }

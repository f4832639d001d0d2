"""``pts bench fanout``: many live SSE subscribers per stream, over real HTTP.

The setting of the issue: one server process, ``streams`` streams each
producing ``sentences`` sentences at LLM pace, ``subscribers`` SSE subscribers
spread evenly over the streams, connected over real HTTP from a separate load
process (this one).

**Server.** uvicorn, one worker, serving
:func:`pts.bench.fanout_app.create_fanout_app` in a subprocess: the
:class:`~pts.plugin.PTSPlugin` routes (so subscribers use the real
``GET /streams/{id}/events``; its ``authorize`` hook allows everything) and
three bench routes. ``POST /bench/streams`` creates the streams with
:meth:`~pts.core.PersistentTextStreaming.create_write_stream`; ``POST
/bench/produce`` starts one producer task per stream *in the server process*
(the process that serves the subscribers also drives the streams, as in a real
deployment): ``await writer.write(token)`` every ``pace`` seconds (each gap
drawn uniformly from 0.5-1.5 x ``pace``, on a fixed schedule; streams start
staggered over one sentence), then ``writer.close()``. ``GET /bench/metrics``
reports the hub's tail reads (``hub.reads``, and per stream), every
``store.read`` the process made, the subscribers per stream, the pool and the
process's CPU time.

**Load.** All subscribers connect (at most ``CONNECT_CONCURRENCY`` connects in
flight) and the server must report every one of them *before* production
starts, so each subscriber sees every flush live. A subscriber is an
:class:`asyncio.Protocol` that only timestamps (``time.monotonic()``) and
stores what ``data_received`` gets; HTTP chunking and SSE are parsed after the
run (:mod:`pts.bench.sse_client`), so the load process spends microseconds per
event while it measures.

**Commit time.** The load process LISTENs on ``pts_v1`` itself: the arrival
of the NOTIFY that a flush's commit sends (``{"id", "size"}``) stands for the
commit. The *delay* of a flush for a subscriber is the arrival of the first
SSE ``text`` event whose ``id`` (the end byte offset) reaches that size, minus
the NOTIFY's arrival, both on this process's monotonic clock. It excludes the
NOTIFY's delivery to the load process, which the server incurs too before its
tail reads; and both timestamps are taken by one event loop, whose lag is
measured and reported.

**Loss and duplication.** Each subscriber's ``text`` events are laid at their
byte offsets (``id`` minus the data's length) and compared with the stream's
final body read from Postgres (``pts.stream_bodies``): gaps are missing bytes,
overlaps duplicated bytes, data differing from the body at its offset a corrupt
event. The body itself must equal what the producer wrote.

**Connections and reads.** ``pg_stat_activity`` for the bench database is
sampled every 100 ms (the load process's own connections excluded): the
server's connections must stay at most pool max + 1 (the LISTEN connection),
whatever the number of subscribers. Reads per flush: the tails' reads during
production divided by the flushes (the streams' appends, final one included),
per stream and overall. Reads subscribers made themselves (catch-up reads when
connecting, and re-reads after ``poll_interval`` without news) are reported
apart.

**Scaling.** After the main run the subscriber count doubles (then bisects
once or twice) until p99 reaches 100 ms, a run loses or duplicates bytes or
fails, or a limit stops it: ``max_subscribers``, the open-file limits of both
processes (raised to their hard limits), the local port range, the time left.

Everything is bounded in count and time; the server process is always
terminated and the bench database dropped. Nothing here is a test: no figure
is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from pts.bench.common import (
    HOST,
    BenchError,
    Database,
    Progress,
    bench_database,
    bench_server,
    http_json,
    machine,
    percentiles,
    raise_open_files_limit,
    run_benchmark,
    server_info,
    summarize,
    table,
)
from pts.bench.fanout_app import APP_FACTORY, MAX_STREAMS, stream_tokens
from pts.bench.sse_client import Subscriber, judge, parse_sse_response
from pts.live.listener import Listener

__all__ = ["FanoutConfig", "format_report", "run_fanout"]

CHANNEL = Listener.CHANNEL

# Targets from the issue (reported, never asserted).
TARGET_P99_MS = 50.0
SCALING_P99_MS = 100.0
TARGET_READS_PER_FLUSH = 1.0

CONNECT_CONCURRENCY = 100
"""Connections being opened at once (the server's accept backlog is 4096)."""
SAMPLE_INTERVAL = 0.1
"""How often pg_stat_activity is sampled (seconds)."""
LAG_PROBE = 0.005
"""How often the load loop's lag is probed (seconds)."""

# Hang guards, far beyond any sane figure.
CONNECT_GUARD = 180.0
SETTLE_GUARD = 30.0
FD_RESERVE = 200
"""File descriptors a process needs besides one per subscriber."""
MAX_REFINEMENTS = 2
"""Bisection steps between the last count that held and the first that did not."""

CLIENT = (
    "asyncio.Protocol per subscriber (HTTP/1.1, Connection: close) in a separate "
    "process; data_received only timestamps and stores, parsing happens after the run"
)


# -- the load side: commit clock, samplers -------------------------------------------------


class _CommitClock:
    """The load process's LISTEN: when each flush of each tracked stream committed."""

    def __init__(self) -> None:
        self.flushes: dict[uuid.UUID, list[tuple[int, float]]] = {}
        self.notifications: dict[uuid.UUID, int] = {}
        self.final: dict[uuid.UUID, str] = {}
        self._closed: dict[uuid.UUID, asyncio.Event] = {}

    def track(self, ids: Sequence[uuid.UUID]) -> None:
        for stream_id in ids:
            self.flushes[stream_id] = []
            self.notifications[stream_id] = 0
            self._closed[stream_id] = asyncio.Event()

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        now = time.monotonic()
        note = json.loads(str(payload))
        stream_id = uuid.UUID(note["id"])
        flushes = self.flushes.get(stream_id)
        if flushes is None:
            return
        size, closed = int(note["size"]), bool(note["closed"])
        if size == 0 and not closed:
            return  # the stream's creation
        self.notifications[stream_id] += 1
        if size > (flushes[-1][0] if flushes else 0):
            flushes.append((size, now))
        if closed:
            self.final[stream_id] = str(note["status"])
            self._closed[stream_id].set()

    async def wait_closed(self, ids: Sequence[uuid.UUID]) -> None:
        for stream_id in ids:
            await self._closed[stream_id].wait()


@dataclass(slots=True)
class _Samples:
    """Server connections (pg_stat_activity) and the load loop's lag, over time."""

    connections: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, open, active) of the server's connections to the bench database."""
    lag: list[tuple[float, float]] = field(default_factory=list)
    """(time, seconds a callback scheduled then waited for the load loop)."""

    def connections_between(self, start: float, end: float) -> list[tuple[float, int, int]]:
        return [s for s in self.connections if start <= s[0] <= end]

    def lag_between(self, start: float, end: float) -> list[float]:
        return [lag for t, lag in self.lag if start <= t <= end]


async def _sample_connections(
    conn: asyncpg.Connection[Any], database: str, exclude: list[int], samples: _Samples
) -> None:
    query = (
        "SELECT count(*) AS open, count(*) FILTER (WHERE state = 'active') AS active "
        "FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' "
        "AND pid <> ALL($2::int[])"
    )
    while True:
        row = await conn.fetchrow(query, database, exclude)
        assert row is not None
        samples.connections.append((time.monotonic(), int(row["open"]), int(row["active"])))
        await asyncio.sleep(SAMPLE_INTERVAL)


async def _probe_lag(samples: _Samples) -> None:
    """Every LAG_PROBE seconds: how long a callback scheduled now waits for the loop."""
    loop = asyncio.get_running_loop()

    def ran(scheduled: float) -> None:
        samples.lag.append((scheduled, time.monotonic() - scheduled))

    while True:
        await asyncio.sleep(LAG_PROBE)
        loop.call_soon(ran, time.monotonic())


def _machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def _port_range() -> int | None:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            low, high = (int(v) for v in ports.read().split())
    except (OSError, ValueError):
        return None
    return high - low + 1


# -- the configuration and one step ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    """The parameters of one run of ``pts bench fanout``."""

    dsn: str
    streams: int = 10
    subscribers: int = 1000
    sentences: int = 40
    tokens_per_sentence: int = 25
    pace: float = 0.02
    """Seconds between two tokens of a stream (each gap 0.5-1.5 times this)."""
    max_subscribers: int = 16_000
    """Scale up to this many subscribers; at most ``subscribers``: no scaling."""
    timeout: float = 900.0
    seed: int = 0

    def __post_init__(self) -> None:
        stream_tokens(0, self.sentences, self.tokens_per_sentence)  # validates both
        if not 1 <= self.streams <= MAX_STREAMS:
            raise ValueError(f"streams must be between 1 and {MAX_STREAMS}")
        if self.subscribers < self.streams:
            raise ValueError("subscribers must be at least streams (one per stream)")
        if not 0 <= self.pace <= 10:
            raise ValueError("pace must be between 0 and 10 s")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    @property
    def tokens(self) -> int:
        return self.sentences * self.tokens_per_sentence

    @property
    def production_s(self) -> float:
        """How long producing takes, about (the mean gap is ``pace``)."""
        return (self.tokens - 1 + self.tokens_per_sentence / 2) * self.pace

    @property
    def scaling(self) -> bool:
        return self.max_subscribers > self.subscribers

    def parameters(self) -> dict[str, Any]:
        """The parameters as reported (no URL: it may hold a password)."""
        params = asdict(self)
        del params["dsn"]
        return params


@dataclass
class _Context:
    config: FanoutConfig
    db: Database
    port: int
    clock: _CommitClock
    samples: _Samples
    conn: asyncpg.Connection[Any]
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
    ctx: _Context, ids: Sequence[uuid.UUID], count: int, subscribers: list[Subscriber]
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
    ctx: _Context, ids: Sequence[uuid.UUID], count: int
) -> dict[str, Any]:
    """Metrics once the server has every subscriber of ``ids`` (bounded)."""
    wanted = {
        str(i): count // len(ids) + (1 if k < count % len(ids) else 0) for k, i in enumerate(ids)
    }
    deadline = time.monotonic() + SETTLE_GUARD
    while True:
        metrics: dict[str, Any] = await http_json(ctx.port, "GET", "/bench/metrics?reset_max=true")
        have = metrics["subscribers_per_stream"]
        if all(have.get(k, 0) == n for k, n in wanted.items()):
            return metrics
        if time.monotonic() > deadline:
            got = sum(have.get(k, 0) for k in wanted)
            raise BenchError(f"the server has {got} of {count} subscribers after connecting")
        await asyncio.sleep(0.05)


async def _await_server_idle(ctx: _Context) -> None:
    """Wait (bounded) until the server holds no subscriber: the last step's are gone."""
    deadline = time.monotonic() + SETTLE_GUARD
    while True:
        metrics = await http_json(ctx.port, "GET", "/bench/metrics")
        if not metrics["subscribers"] or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


async def _bodies(ctx: _Context, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    records = await ctx.conn.fetch(
        "SELECT id, text FROM pts.stream_bodies WHERE id = ANY($1::uuid[])", list(ids)
    )
    return {r["id"]: str(r["text"]).encode() for r in records}


async def _step(ctx: _Context, count: int, progress: Progress) -> dict[str, Any]:
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
        cpu0, load0, machine0 = m0["cpu_s"], time.process_time(), _machine_cpu()
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
        cpu1, load1, machine1 = m1["cpu_s"], time.process_time(), _machine_cpu()
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
        deliveries.append(judge(response, bodies.get(stream_id, b""), ctx.clock.flushes[stream_id]))
    delays = [d for delivery in deliveries for d in delivery.delays]
    # Per flush (a stream's j-th): its first and its last subscriber's delay.
    extremes: dict[tuple[int, int], tuple[float, float]] = {}
    for sub, delivery in zip(subscribers, deliveries, strict=True):
        for j, d in enumerate(delivery.delays):
            low, high = extremes.get((sub.stream, j), (d, d))
            extremes[sub.stream, j] = (min(low, d), max(high, d))

    appends = {sid: int(m1["appends"].get(str(sid), 0)) for sid in ids}
    tail_reads = {
        sid: int(m1["tail_reads"].get(str(sid), 0)) - int(m0["tail_reads"].get(str(sid), 0))
        for sid in ids
    }
    flushes = sum(appends.values())
    gc0, gc1 = m0["gc"], m1["gc"]
    hub_reads = m1["hub_reads"] - m0["hub_reads"]
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
            len(ctx.clock.flushes[ids[sub.stream]]) for sub in subscribers
        ),
        "subscribers_complete": sum(1 for d in deliveries if d.complete),
        "subscribers_exact": sum(1 for d in deliveries if d.exact),
        "missing_bytes": sum(d.missing for d in deliveries),
        "duplicated_bytes": sum(d.duplicated for d in deliveries),
        "corrupt_events": sum(d.corrupt_events for d in deliveries),
        "max_missing_per_subscriber": max((d.missing for d in deliveries), default=0),
        "max_duplicated_per_subscriber": max((d.duplicated for d in deliveries), default=0),
        "bodies_as_written": sum(1 for sid in ids if bodies.get(sid) == expected[sid]),
        "final_status": sorted({ctx.clock.final.get(sid, "?") for sid in ids}),
        "producer_failures": m1["failures"],
        "bytes_per_stream": summarize([len(b) for b in expected.values()]),
        "flushes": flushes,
        "flushes_per_stream": summarize(list(appends.values())),
        "notifications": sum(ctx.clock.notifications[sid] for sid in ids),
        "reads": {
            "tail": hub_reads,
            "per_flush": hub_reads / flushes if flushes else None,
            "per_flush_per_stream_max": max(
                (tail_reads[sid] / appends[sid] for sid in ids if appends[sid]), default=None
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
            "server_pool_size": m1["pool"]["size"],
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


def _holds(step: dict[str, Any], threshold_ms: float) -> bool:
    """The step kept p99 under ``threshold_ms`` and lost or repeated nothing."""
    if step.get("error"):
        return False
    delay = step["delay_ms"]
    return bool(
        delay["n"] > 0
        and delay["p99"] < threshold_ms
        and step["missing_bytes"] == 0
        and step["duplicated_bytes"] == 0
        and step["corrupt_events"] == 0
        and step["subscribers_complete"] == step["subscribers"]
    )


def _limit(ctx: _Context, count: int, estimate: float) -> str | None:
    """Why ``count`` subscribers cannot be tried (None: they can)."""
    if count + FD_RESERVE > ctx.load_nofile:
        return f"the load process's open-file limit ({ctx.load_nofile:,})"
    if ctx.server_nofile is not None and count + FD_RESERVE > ctx.server_nofile:
        return f"the server process's open-file limit ({ctx.server_nofile:,})"
    ports = _port_range()
    if ports is not None and count + FD_RESERVE > ports:
        return f"the local port range ({ports:,} ports)"
    if time.monotonic() + estimate > ctx.deadline:
        return f"the time budget (--timeout; the next step needs ~{estimate:.0f} s)"
    return None


async def _scale(ctx: _Context, main: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Find the largest subscriber count that holds p99 < 100 ms (bounded)."""
    config = ctx.config
    steps = [main]
    first: int = main["subscribers"]
    ok: set[int] = {first} if _holds(main, SCALING_P99_MS) else set()
    bad: set[int] = set() if ok else {first}
    stopped: str | None = None
    connect_per_sub: float = main["connect_s"] / first

    def estimate(count: int) -> float:
        return connect_per_sub * count * 1.5 + config.production_s * 1.5 + 30

    def candidates() -> int | None:
        if ok and not bad:
            top = max(ok)
            if top >= config.max_subscribers:
                return None
            return min(top * 2, config.max_subscribers)
        if bad and not ok:
            low = min(bad) // 2
            return low if low >= config.streams else None
        return None

    refinements = 0
    while True:
        count = candidates()
        if count is None and ok and bad and refinements < MAX_REFINEMENTS:
            low = max(ok)
            high = min((x for x in bad if x > low), default=low)
            mid = _round_count((low + high) // 2, config.streams)
            if low < mid < high and high - low > max(low // 4, config.streams):
                count = mid
                refinements += 1
        if count is None:
            if ok and not bad:
                stopped = f"reached --max-subscribers ({config.max_subscribers:,})"
            break
        reason = _limit(ctx, count, estimate(count))
        if reason is not None:
            stopped = f"stopped before {count:,} subscribers by {reason}"
            break
        progress(f"scaling: {count:,} subscribers")
        try:
            remaining = ctx.deadline - time.monotonic() - 20
            async with asyncio.timeout(max(1.0, remaining)):
                step = await _step(ctx, count, progress)
        except (BenchError, TimeoutError, OSError) as exc:
            message = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                message = "ran out of the time budget (--timeout)"
            steps.append({"subscribers": count, "error": message})
            bad.add(count)
            stopped = f"{count:,} subscribers failed: {message}"
            break
        steps.append(step)
        connect_per_sub = max(connect_per_sub, step["connect_s"] / count)
        (ok if _holds(step, SCALING_P99_MS) else bad).add(count)
        _summary(step, progress)
    largest = max(ok) if ok else None
    over = min((x for x in bad if largest is None or x > largest), default=None)
    return {
        "threshold_p99_ms": SCALING_P99_MS,
        "steps": sorted(steps, key=lambda s: int(s["subscribers"])),
        "largest_holding": largest,
        "smallest_failing": over,
        "stopped": stopped,
    }


def _round_count(count: int, streams: int) -> int:
    """``count`` rounded to a multiple of ``streams`` (and of 500 above 2,000)."""
    unit = streams * (500 // streams) if count > 2000 and streams <= 500 else streams
    return max(streams, round(count / unit) * unit)


def _summary(step: dict[str, Any], progress: Progress) -> None:
    d = step["delay_ms"]
    if d["n"]:
        progress(
            f"  {step['subscribers']:,} subscribers: p50 {d['p50']:.1f} ms, p99 {d['p99']:.1f} ms, "
            f"max {d['max']:.1f} ms; missing {step['missing_bytes']}, duplicated "
            f"{step['duplicated_bytes']}"
        )


# -- the run ---------------------------------------------------------------------------------


def run_fanout(config: FanoutConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; return every figure (what ``--json`` writes).

    Raises BenchError if it cannot run, the main run fails, ``config.timeout``
    passes or SIGTERM arrives; the server process is stopped and the bench
    database dropped in every case. A failing scaling step ends the scaling
    and is reported, not raised.
    """
    say = progress or (lambda _message: None)
    return run_benchmark(lambda: _run(config, say), config.timeout)


async def _run(config: FanoutConfig, progress: Progress) -> dict[str, Any]:
    started = time.monotonic()
    load_nofile = raise_open_files_limit()
    if config.subscribers + FD_RESERVE > load_nofile:
        raise BenchError(
            f"{config.subscribers} subscribers need more open files than this process may "
            f"have ({load_nofile}; raise `ulimit -n`)"
        )
    async with asyncio.timeout(config.timeout):
        async with bench_database(config.dsn, progress) as db:
            clock = _CommitClock()
            samples = _Samples()
            own: list[asyncpg.Connection[Any]] = []
            background: list[asyncio.Task[None]] = []
            try:
                for _ in range(3):
                    own.append(await asyncpg.connect(db.url, timeout=15))
                listener, conn, sampler = own
                await listener.add_listener(CHANNEL, clock.on_notify)
                # The load process's own connections are not the server's.
                exclude = [c.get_server_pid() for c in own]
                background = [
                    asyncio.create_task(
                        _sample_connections(sampler, db.info["database"], exclude, samples)
                    ),
                    asyncio.create_task(_probe_lag(samples)),
                ]
                progress(f"starting the bench server ({APP_FACTORY}) on {db.info['database']}")
                async with bench_server(db.url, APP_FACTORY, backlog=4096) as port:
                    first = await http_json(port, "GET", "/bench/metrics")
                    ctx = _Context(
                        config=config,
                        db=db,
                        port=port,
                        clock=clock,
                        samples=samples,
                        conn=conn,
                        deadline=started + config.timeout - 30,
                        load_nofile=load_nofile,
                        pool_max=first["pool"]["max"],
                        server_nofile=first["nofile_limit"],
                        poll_interval=first["poll_interval_s"],
                    )
                    progress(
                        f"main run: {config.subscribers:,} subscribers on {config.streams} "
                        f"streams, {config.sentences} sentences each"
                    )
                    main = await _step(ctx, config.subscribers, progress)
                    _summary(main, progress)
                    if config.scaling:
                        scaling = await _scale(ctx, main, progress)
                    else:
                        holds = _holds(main, SCALING_P99_MS)
                        scaling = {
                            "threshold_p99_ms": SCALING_P99_MS,
                            "steps": [main],
                            "largest_holding": config.subscribers if holds else None,
                            "smallest_failing": None if holds else config.subscribers,
                            "stopped": "scaling off (--max-subscribers <= --subscribers)",
                        }
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                for c in own:
                    with contextlib.suppress(Exception):
                        await c.close(timeout=5)
    result = _results(config, ctx, main, scaling, load_nofile)
    result["elapsed_s"] = time.monotonic() - started
    return result


def _results(
    config: FanoutConfig,
    ctx: _Context,
    main: dict[str, Any],
    scaling: dict[str, Any],
    load_nofile: int,
) -> dict[str, Any]:
    delay, reads, conns = main["delay_ms"], main["reads"], main["connections"]
    per_stream_max = reads["per_flush_per_stream_max"]
    return {
        "benchmark": "fanout",
        "machine": machine(),
        "parameters": config.parameters(),
        "server": {
            **server_info(APP_FACTORY),
            "producers": "in the server process (one task per stream, StreamWriter)",
            "open_files_limit": ctx.server_nofile,
            "poll_interval_s": ctx.poll_interval,
        },
        "client": CLIENT,
        "load_open_files_limit": load_nofile,
        "database": {**ctx.db.info, "fresh": ctx.db.fresh},
        "method": {
            "commit_time": (
                "arrival of the flush's NOTIFY (pts_v1) at the load process's own LISTEN "
                "connection; excludes NOTIFY delivery to the load process, which the "
                "server incurs too"
            ),
            "delay": (
                "arrival of the first SSE text event whose id (end byte offset) reaches the "
                "flush's size, minus the commit time; one sample per subscriber and flush"
            ),
            "clock": "time.monotonic() in the load process (one event loop; lag reported)",
        },
        "answer": {
            "tokens_per_stream": config.tokens,
            "sentences": config.sentences,
            "tokens_per_sentence": config.tokens_per_sentence,
            "pace_s": config.pace,
            "production_s_estimate": config.production_s,
        },
        "main": main,
        "targets": {
            "p99_ms_max": TARGET_P99_MS,
            "p99_met": delay["n"] > 0 and delay["p99"] < TARGET_P99_MS,
            "lossless_met": main["missing_bytes"] == 0
            and main["duplicated_bytes"] == 0
            and main["corrupt_events"] == 0,
            "connections_max": conns["limit"],
            "connections_met": conns["met"],
            "reads_per_flush_max": TARGET_READS_PER_FLUSH,
            "reads_met": per_stream_max is not None and per_stream_max <= TARGET_READS_PER_FLUSH,
        },
        "scaling": scaling,
    }


# -- the report ------------------------------------------------------------------------------


def _gc(stats: dict[str, list[float]]) -> str:
    gens = [
        f"gen{g} {int(n):,}x (max {top:.1f} ms)"
        for g, (n, top) in enumerate(zip(stats["collections"], stats["max_pause_ms"], strict=True))
        if n
    ]
    return f"{', '.join(gens) or 'none'}; paused {sum(stats['pause_ms']):,.0f} ms in all"


def _met(flag: bool) -> str:
    return "met" if flag else "NOT met"


def _f(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def format_report(result: dict[str, Any]) -> str:
    """The figures as readable tables."""
    p, m, srv, db = result["parameters"], result["machine"], result["server"], result["database"]
    a, main, t = result["answer"], result["main"], result["targets"]
    delay, reads, conns = main["delay_ms"], main["reads"], main["connections"]
    lines = [
        f"pts bench fanout: {p['streams']} streams x {a['sentences']} sentences of "
        f"{a['tokens_per_sentence']} tokens ({main['bytes_per_stream']['median']:,.0f} bytes), "
        f"{a['pace_s'] * 1000:g} ms/token (+-50 %), {p['subscribers']:,} SSE subscribers",
        f"  machine:  {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}",
        f"  server:   {srv['runner']} ({srv['loop']}, {srv['http']}), driver {srv['driver']}, "
        f"pool max {srv['pool_max_size']}; producers {srv['producers']}",
        f"  load:     {result['client']}",
        f"  database: Postgres {db['server_version']} (fsync {db['fsync']}, synchronous_commit "
        f"{db['synchronous_commit']}), {'fresh' if db['fresh'] else 'shared'} database",
        f"  commit time = {result['method']['commit_time']}",
        "",
        f"Main run: {main['subscribers']:,} subscribers ({main['per_stream']:g} per stream), "
        f"all connected before production",
    ]
    rows = [
        ["delay commit -> subscriber, p50", _f(delay.get("p50"), 2, " ms"), "", ""],
        [
            "                             p99",
            _f(delay.get("p99"), 2, " ms"),
            f"< {t['p99_ms_max']:g} ms",
            _met(t["p99_met"]),
        ],
        ["                             max", _f(delay.get("max"), 2, " ms"), "", ""],
        [
            "missing / duplicated bytes",
            f"{main['missing_bytes']} / {main['duplicated_bytes']}",
            "0 / 0",
            _met(t["lossless_met"]),
        ],
        [
            "server DB connections (max)",
            f"{conns['open_max_incl_connecting']} (production {conns['open_min']}-"
            f"{conns['open_max']}, active <= {conns['active_max']})",
            f"<= {conns['limit']} (pool + 1)",
            _met(t["connections_met"]),
        ],
        [
            "tail reads per flush per stream (max)",
            _f(reads["per_flush_per_stream_max"], 3),
            f"<= {t['reads_per_flush_max']:g}",
            _met(t["reads_met"]),
        ],
    ]
    lines += table(["", "measured", "target", ""], rows)
    cpu, lag = main["cpu_pct"], main["load_loop_lag_ms"]
    first, last = main["per_flush_ms"]["first_subscriber"], main["per_flush_ms"]["last_subscriber"]
    lines += [
        f"  delays: {main['delay_samples']:,} samples (a subscriber x a flush; "
        f"{main['delay_samples_expected']:,} expected), p90 {_f(delay.get('p90'), 2)} ms, "
        f"p99.9 {_f(delay.get('p99.9'), 2)} ms, min {_f(delay.get('min'), 2)} ms",
        f"  per flush: first subscriber p50 {_f(first.get('p50'), 2)} ms, p99 "
        f"{_f(first.get('p99'), 2)} ms (NOTIFY, tail read, first send); last subscriber p50 "
        f"{_f(last.get('p50'), 2)} ms, p99 {_f(last.get('p99'), 2)} ms",
        f"  subscribers: {main['subscribers_exact']:,} exact, {main['subscribers_complete']:,} "
        f"complete (final status done, response ended); corrupt events "
        f"{main['corrupt_events']}; bodies as written {main['bodies_as_written']}/"
        f"{main['streams']}",
        f"  flushes: {main['flushes']:,} ({main['flushes_per_stream']['median']:g} per stream, "
        f"{main['notifications']:,} notifications seen); tail reads {reads['tail']:,} = "
        f"{_f(reads['per_flush'], 3)} per flush overall",
        f"  reads by subscribers themselves: {reads['while_connecting']:,} while connecting "
        f"(catch-up + re-reads after {srv['poll_interval_s']:g} s of silence), "
        f"{reads['by_subscribers_during_production']:,} during production",
        f"  CPU during production: server {_f(cpu['server'], 0)} %, load "
        f"{_f(cpu['load'], 0)} % (of one core), machine {_f(cpu['machine'], 0)} % "
        f"(of {m['cpu_count']}); server CPU per event delivered "
        f"{_f(main['server_cpu_us_per_delivery'], 0)} us",
        f"  server garbage collector during production: {_gc(main['server_gc'])}",
        f"  load loop lag (a callback's wait) p99 {_f(lag.get('p99'), 2)} ms, "
        f"max {_f(lag.get('max'), 2)} ms; connect {main['connect_s']:.1f} s, production "
        f"{main['production_s']:.1f} s, drain {main['drain_s'] * 1000:.0f} ms",
    ]
    if delay.get("min", 0) < 0:
        lines.append(
            "  (min < 0: Postgres delivered that NOTIFY to the load process after the server "
            "had read and sent the flush: the commit-time proxy jitters by about that much)"
        )
    lines.append("")
    scaling = result["scaling"]
    lines.append(f"Scaling: subscribers while p99 < {scaling['threshold_p99_ms']:g} ms")
    rows = []
    for step in scaling["steps"]:
        if step.get("error"):
            continue  # listed below the table
        d, c, r = step["delay_ms"], step["connections"], step["reads"]
        rows.append(
            [
                f"{step['subscribers']:,}",
                f"{step['per_stream']:g}",
                _f(d.get("p50"), 1),
                _f(d.get("p99"), 1),
                _f(d.get("max"), 1),
                f"{step['missing_bytes']}/{step['duplicated_bytes']}",
                str(c["open_max_incl_connecting"]),
                _f(r["per_flush_per_stream_max"], 2),
                _f(step["cpu_pct"]["server"], 0),
                _f(max(step["server_gc"]["max_pause_ms"]), 0),
                f"{step['connect_s']:.1f}",
            ]
        )
    lines += table(
        [
            "subscribers",
            "per stream",
            "p50 ms",
            "p99 ms",
            "max ms",
            "miss/dup",
            "conns",
            "reads/flush",
            "server CPU %",
            "GC max ms",
            "connect s",
        ],
        rows,
    )
    lines += [
        f"  {step['subscribers']:,} subscribers failed: {step['error']}"
        for step in scaling["steps"]
        if step.get("error")
    ]
    largest, over = scaling["largest_holding"], scaling["smallest_failing"]
    verdict = (
        f"  largest count holding p99 < {scaling['threshold_p99_ms']:g} ms: "
        + ("none of those run" if largest is None else f"{largest:,}")
        + ("" if over is None else f" ({over:,} did not)")
    )
    lines.append(verdict)
    if scaling["stopped"]:
        lines.append(f"  stopped: {scaling['stopped']}")
    lines += [
        "",
        f"took {result['elapsed_s']:.1f} s; open-file limits: load "
        f"{result['load_open_files_limit']:,}, server {srv['open_files_limit']:,}",
    ]
    return "\n".join(lines)

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
reports what its ``pts.stats()`` says (tail reads, tails, subscribers), every
``store.read`` the process made (in all and per stream), the pool's size and
the process's CPU time.

**Load.** All subscribers connect (at most ``CONNECT_CONCURRENCY`` connects in
flight) and the server must report every one of them *before* production
starts, so each subscriber sees every flush live. A subscriber is an
:class:`asyncio.Protocol` that only timestamps (``time.monotonic()``) and
stores what ``data_received`` gets; HTTP chunking and SSE are parsed after the
run (:mod:`pts.bench.sse_client`), so the load process spends microseconds per
event while it measures. One step: :mod:`pts.bench.fanout_step`.

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
final body read through the store: gaps are missing bytes,
overlaps duplicated bytes, data differing from the body at its offset a corrupt
event. The body itself must equal what the producer wrote.

**Connections and reads.** ``pg_stat_activity`` for the bench database is
sampled every 100 ms (the load process's own connections, named
``application_name=pts-bench-load``, excluded): the server's connections must
stay at most pool max + 1 (the LISTEN connection), whatever the number of
subscribers. Reads per flush: the tails' reads during production divided by
the flushes (the streams' appends, final one included), overall; per stream,
the stream's reads during production (its tail's, plus any re-read of its
subscribers, normally none: pts.stats() counts tail reads per process only).
Reads subscribers made themselves (catch-up reads when connecting, and re-reads
after ``poll_interval`` without news) are reported apart.

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
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

from pts.bench.client import BenchError, http_json
from pts.bench.common import (
    Progress,
    bench_database,
    bench_server,
    raise_open_files_limit,
    run_benchmark,
)
from pts.bench.config import FanoutConfig
from pts.bench.fanout_app import APP_FACTORY
from pts.bench.fanout_report import SCALING_P99_MS, results
from pts.bench.fanout_step import Context, measure_step
from pts.bench.probes import (
    CommitClock,
    Samples,
    listening,
    port_range,
    probe_lag,
    sample_connections,
)
from pts.store import create_store

__all__ = ["FanoutConfig", "run_fanout"]

LOAD_APPLICATION = "pts-bench-load"
"""The ``application_name`` of the load process's own database connections."""
FD_RESERVE = 200
"""File descriptors a process needs besides one per subscriber."""
MAX_REFINEMENTS = 2
"""Bisection steps between the last count that held and the first that did not."""


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


def _limit(ctx: Context, count: int, estimate: float) -> str | None:
    """Why ``count`` subscribers cannot be tried (None: they can)."""
    if count + FD_RESERVE > ctx.load_nofile:
        return f"the load process's open-file limit ({ctx.load_nofile:,})"
    if ctx.server_nofile is not None and count + FD_RESERVE > ctx.server_nofile:
        return f"the server process's open-file limit ({ctx.server_nofile:,})"
    ports = port_range()
    if ports is not None and count + FD_RESERVE > ports:
        return f"the local port range ({ports:,} ports)"
    if time.monotonic() + estimate > ctx.deadline:
        return f"the time budget (--timeout; the next step needs ~{estimate:.0f} s)"
    return None


async def _scale(ctx: Context, main: dict[str, Any], progress: Progress) -> dict[str, Any]:
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
                step = await measure_step(ctx, count, progress)
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
            clock, samples = CommitClock(), Samples()
            # The load process's own connections carry a name: they are not the server's.
            url = with_query(db.url, application_name=LOAD_APPLICATION)
            store = create_store(url, min_size=1, max_size=1)
            background: list[asyncio.Task[None]] = []
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(listening(url, clock))
                sampler = await asyncpg.connect(url, timeout=15)
                stack.push_async_callback(sampler.close)
                await store.open()
                stack.push_async_callback(store.close)
                background = [
                    asyncio.create_task(
                        sample_connections(sampler, db.info["database"], LOAD_APPLICATION, samples)
                    ),
                    asyncio.create_task(probe_lag(samples)),
                ]
                stack.push_async_callback(_cancel, background)
                progress(f"starting the bench server ({APP_FACTORY}) on {db.info['database']}")
                async with bench_server(db.url, APP_FACTORY, backlog=4096) as port:
                    first = await http_json(port, "GET", "/bench/metrics")
                    ctx = Context(
                        config=config,
                        db=db,
                        port=port,
                        clock=clock,
                        samples=samples,
                        store=store,
                        deadline=started + config.timeout - 30,
                        load_nofile=load_nofile,
                        pool_max=first["pool_max"],
                        server_nofile=first["nofile_limit"],
                        poll_interval=first["poll_interval_s"],
                    )
                    progress(
                        f"main run: {config.subscribers:,} subscribers on {config.streams} "
                        f"streams, {config.sentences} sentences each"
                    )
                    main = await measure_step(ctx, config.subscribers, progress)
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
    result = results(config, ctx, main, scaling, load_nofile)
    result["elapsed_s"] = time.monotonic() - started
    return result


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def with_query(url: str, **params: str) -> str:
    """``url`` with these query parameters added (libpq and asyncpg read them alike)."""
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(query=query))

"""``pts bench driven``: what a driven stream costs, over real HTTP, server in its own process.

One run measures three things with the same generator (``tokens`` tokens, no
sleeps, forming ``sentences`` sentences, each ending with ``". "``):

1. **Driving-client overhead.** The generator through a bare Litestar
   :class:`~litestar.response.Stream` (each token yielded, encoded) and through
   :meth:`~pts.core.PersistentTextStreaming.stream`, one request at a time,
   interleaved (bare/pts, then pts/bare, ...) so drift affects both alike:
   time to the first body byte (TTFB) and to the last (TTLB), medians and p90.
2. **Database writes per answer.** The pts answers of (1) next to the naive
   approach (a ``store.append`` per token, each awaited before the token is
   sent; the last one also finishes the stream). Without sleeps the whole
   answer exists within a few milliseconds, before the first flush has
   committed, so it lands in one or two appends: that figure is degenerate.
   Hence also ``paced_requests`` *paced* pts answers, whose generator sleeps
   ``pace`` seconds between tokens as a model streams: their commits and rows
   are the figure to compare with the naive approach's. *Commits* are counted
   exactly, per stream, from the ``pts_v1`` notifications: every committed
   change of a stream (the claim, every append, the final status) sends one,
   and nothing else does (creating the stream notifies ``pending``, which is
   not counted). *Rows* are the stream's rows in ``pts.chunks``.
3. **Concurrency.** ``streams`` requests at once, bare and pts batches
   alternating for ``rounds`` rounds: tokens per second delivered to the
   clients, and the TTLB ratio.
4. **UI message streams.** The same answer as AI SDK UI message chunks (a
   ``text-delta`` per token): a bare SSE response of those chunks against
   :meth:`~pts.core.PersistentTextStreaming.stream_ui`, ``ui_requests`` each,
   interleaved (TTFB, TTLB, the TTLB ratio), and the commits and rows per
   answer, unpaced and paced (:mod:`pts.bench.driven_ui`).

The server is uvicorn running :func:`pts.bench.driven_app.create_bench_app` in a
subprocess on a
free 127.0.0.1 port. The load client is the minimal asyncio HTTP/1.1 client of
:mod:`pts.bench.client` (one connection per request, ``Connection: close``),
not httpx: its per-chunk cost is a few microseconds, so it distorts neither
TTFB nor the ratio. Times start before the client connects.

The bench creates a database ``pts_bench_<random>`` on the given server and
drops it at the end; without the privilege it uses the given database (counts
are per stream, so they stay exact). Nothing here is a test: no figure is
asserted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from pts.bench.client import REQUEST_GUARD, BenchError, http_request
from pts.bench.common import Progress, bench_database, bench_queries, bench_server, run_benchmark
from pts.bench.config import DrivenConfig, answer_tokens
from pts.bench.driven_app import APP_FACTORY
from pts.bench.driven_report import Batch, Kind, Sample, check, results
from pts.bench.driven_ui import persisted_text, ui_check, ui_results, ui_text
from pts.bench.probes import CommitClock, listening
from pts.store import SQLStore, create_store

__all__ = ["DrivenConfig", "run_driven"]

PERSIST_GUARD = 120.0
"""Seconds an answer may take to finish in Postgres (a hang guard)."""


async def _fetch(
    port: int, kind: Kind, path: str, expected: bytes, stream_id: uuid.UUID | None = None
) -> Sample:
    async with asyncio.timeout(REQUEST_GUARD):
        status, body, start, ttfb, ttlb = await http_request(port, "POST", path)
    if status != 200:
        detail = body[:300].decode("utf-8", "replace")
        raise BenchError(f"POST {path} answered {status}: {detail}")
    # A UI message stream carries the answer as text-delta chunks.
    ok = ui_text(body) == expected.decode() if kind.startswith("ui") else body == expected
    return Sample(kind, start, ttfb, ttlb, status, len(body), ok, stream_id)


@dataclass
class _Run:
    """What one run collects."""

    config: DrivenConfig
    expected: bytes
    port: int = 0
    store: SQLStore | None = None
    clock: CommitClock = field(default_factory=lambda: CommitClock(time.perf_counter))
    sequential: list[Sample] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    ui: list[Sample] = field(default_factory=list)
    rebuilt: dict[uuid.UUID, bool] = field(default_factory=dict)
    """Per UI stream: whether its persisted chunks join to the answer."""

    async def new_stream(self, content_type: str = "text/plain") -> uuid.UUID:
        assert self.store is not None
        stream_id = (await self.store.create_stream(content_type=content_type)).id
        self.clock.track([stream_id])
        return stream_id

    async def one(self, kind: Kind) -> Sample:
        query = self.config.query()
        if kind in ("bare", "ui-bare"):
            return await _fetch(self.port, kind, f"/bench/{kind}{query}", self.expected)
        ui = kind.startswith("ui")
        stream_id = await self.new_stream("application/json" if ui else "text/plain")
        route = "ui" if ui else "pts"
        if kind in ("paced", "ui-paced"):
            path = f"/bench/{route}/{stream_id}{query}&pace={self.config.pace!r}"
        else:
            path = f"/bench/{kind}/{stream_id}{query}"
        sample = await _fetch(self.port, kind, path, self.expected, stream_id)
        await self.clock.wait_closed([stream_id], PERSIST_GUARD)
        if ui:
            assert self.store is not None
            data = (await self.store.read(stream_id)).data
            self.rebuilt[stream_id] = persisted_text(data) == self.expected.decode()
        return sample


async def _sequential(run: _Run, progress: Progress) -> None:
    """Phases 1 and 2: one request at a time, bare and pts interleaved, naive spread out."""
    config = run.config
    total = config.warmup + config.requests
    # Naive answers are slow (a commit per token): a few, spread over the run.
    naive_at = {
        config.warmup + k * config.requests // config.naive_requests
        for k in range(config.naive_requests)
    }
    if config.warmup and config.naive_requests:
        naive_at.add(0)  # one warm-up
    progress(
        f"sequential: {config.requests} bare + {config.requests} pts "
        f"+ {config.naive_requests} naive requests (after {config.warmup} warm-up rounds)"
    )
    for i in range(total):
        order: list[Kind] = ["bare", "pts"] if i % 2 == 0 else ["pts", "bare"]
        if i in naive_at:
            order.append("naive")
        for kind in order:
            sample = await run.one(kind)
            if i >= config.warmup:
                run.sequential.append(sample)


async def _paced(run: _Run, progress: Progress) -> None:
    """Phase 2b: pts answers at LLM pace, one at a time (what a sentence-sized flush saves)."""
    config = run.config
    if not config.paced_requests:
        return
    seconds = config.paced_requests * (config.tokens - 1) * config.pace
    progress(
        f"paced: {config.paced_requests} pts answers, {config.pace * 1000:g} ms between "
        f"tokens (~{seconds:.0f} s)"
    )
    for _ in range(config.paced_requests):
        run.sequential.append(await run.one("paced"))


async def _ui(run: _Run, progress: Progress) -> None:
    """The UI row: bare SSE and ``stream_ui`` interleaved, then ``stream_ui`` at LLM pace."""
    config = run.config
    if not config.ui_requests:
        return
    progress(
        f"UI message stream: {config.ui_requests} bare SSE + {config.ui_requests} stream_ui "
        f"requests (after {config.warmup} warm-up rounds), {config.paced_requests} paced"
    )
    for i in range(config.warmup + config.ui_requests):
        order: list[Kind] = ["ui-bare", "ui"] if i % 2 == 0 else ["ui", "ui-bare"]
        for kind in order:
            sample = await run.one(kind)
            if i >= config.warmup:
                run.ui.append(sample)
    for _ in range(config.paced_requests):
        run.ui.append(await run.one("ui-paced"))


async def _concurrent(run: _Run, progress: Progress) -> None:
    """Phase 3: ``streams`` requests at once, bare and pts batches alternating.

    With warm-up, one unmeasured batch of each kind first (it also grows the
    server's connection pool to its working size).
    """
    config = run.config
    rounds = [-1] if config.warmup else []
    for r in [*rounds, *range(config.rounds)]:
        order: list[Kind] = ["bare", "pts"] if r % 2 == 0 else ["pts", "bare"]
        for kind in order:
            what = "warm-up" if r < 0 else f"round {r + 1}/{config.rounds}"
            progress(f"concurrency {what}: {config.streams} {kind} streams at once")
            batch = await _batch(run, kind)
            if r >= 0:
                run.batches.append(batch)


async def _batch(run: _Run, kind: Kind) -> Batch:
    config = run.config
    query = config.query()
    if kind == "bare":
        ids: list[uuid.UUID | None] = [None] * config.streams
        paths = ["/bench/bare" + query] * config.streams
    else:
        created = await asyncio.gather(*(run.new_stream() for _ in range(config.streams)))
        ids = list(created)
        paths = [f"/bench/{kind}/{sid}{query}" for sid in created]
    t0 = time.perf_counter()
    samples = await asyncio.gather(
        *(
            _fetch(run.port, kind, path, run.expected, sid)
            for path, sid in zip(paths, ids, strict=True)
        )
    )
    wall = max(s.end for s in samples) - t0
    persisted: float | None = None
    stream_ids = [s for s in ids if s is not None]
    if stream_ids:
        await run.clock.wait_closed(stream_ids, PERSIST_GUARD)
        persisted = max(_closed_at(run.clock, s) for s in stream_ids) - t0
    return Batch(kind, wall, list(samples), persisted)


def _closed_at(clock: CommitClock, stream_id: uuid.UUID) -> float:
    note = clock.closed(stream_id)
    assert note is not None  # waited for
    return note.at


# -- the database ---------------------------------------------------------------------------


async def _chunk_rows(
    url: str, stream_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, int]]:
    """Per stream: rows in ``pts.chunks`` and the bytes they hold.

    The one query of its own this benchmark makes (``bench_chunk_rows`` of
    ``sql/bench.sql``): no store call counts a stream's rows (the figure that
    shows what flushing per sentence saves).
    """
    conn = await asyncpg.connect(url, timeout=15)
    try:
        records = await conn.fetch(bench_queries()["bench_chunk_rows"], list(stream_ids))
    finally:
        await conn.close()
    return {r["stream_id"]: (int(r["n"]), int(r["bytes"])) for r in records}


# -- the run ------------------------------------------------------------------------------


def run_driven(config: DrivenConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; return every figure (what ``--json`` writes).

    Raises BenchError if it cannot run, a request fails, a body differs from
    the answer, ``config.timeout`` passes or SIGTERM arrives; the server
    process is stopped and the bench database dropped in every case (on
    Ctrl-C too, which raises KeyboardInterrupt once they are).
    """
    say = progress or (lambda _message: None)
    return run_benchmark(lambda: _run(config, say), config.timeout)


async def _run(config: DrivenConfig, progress: Progress) -> dict[str, Any]:
    expected = "".join(answer_tokens(config.tokens, config.sentences)).encode()
    run = _Run(config, expected)
    started = time.perf_counter()
    async with asyncio.timeout(config.timeout):
        async with bench_database(config.dsn, progress) as db:
            async with listening(db.url, run.clock):
                run.store = create_store(db.url, "asyncpg", min_size=1, max_size=4)
                await run.store.open()
                try:
                    progress(f"starting the bench server ({APP_FACTORY}) on {db.info['database']}")
                    async with bench_server(db.url, APP_FACTORY) as port:
                        run.port = port
                        await _sequential(run, progress)
                        await _paced(run, progress)
                        await _ui(run, progress)
                        await _concurrent(run, progress)
                finally:
                    await run.store.close()
                ids = [s.stream_id for s in run.sequential if s.stream_id is not None]
                ids += [s.stream_id for b in run.batches for s in b.samples if s.stream_id]
                ids += [s.stream_id for s in run.ui if s.stream_id is not None]
                rows = await _chunk_rows(db.url, ids)
            result = results(config, expected, run.sequential, run.batches, run.clock, db, rows)
            result["ui"] = ui_results(run.ui, run.clock, rows, run.rebuilt, config.pace)
    result["elapsed_s"] = time.perf_counter() - started
    check(result)
    ui_check(result["ui"])
    return result

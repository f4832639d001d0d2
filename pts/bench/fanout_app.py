"""The server of ``pts bench fanout``: an app factory for uvicorn.

The server process both serves the SSE subscribers and drives the streams (a
producer task per stream, writing through a :class:`~pts.StreamWriter`), as
a real deployment's does. It reports what the benchmark needs about it through
public seams only: :meth:`~pts.PersistentTextStreaming.stats` (tail reads,
tails, subscribers, the listener), its writers' flushes, and the reads of its
store, which counts every ``read`` per stream (:class:`CountingReads`, a
subclass of the store the driver names; a public method overridden, nothing
patched); plus its CPU time and garbage-collector pauses.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import os
import random
import resource
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, TypeAlias

from litestar import Litestar, get, post
from litestar.params import FromQuery, QueryParameter

from pts import PersistentTextStreaming, PTSPlugin, ReadResult, Settings, StreamWriter
from pts.bench.common import raise_open_files_limit
from pts.bench.config import MAX_STREAM_TOKENS, MAX_STREAMS, stream_tokens
from pts.http.app import gc_startup_hooks
from pts.store.asyncpg_store import AsyncpgStore
from pts.store.psycopg_store import PsycopgStore

__all__ = ["APP_FACTORY", "CountingReads", "create_fanout_app"]

APP_FACTORY = "pts.bench.fanout_app:create_fanout_app"

CountParam: TypeAlias = Annotated[int, QueryParameter(ge=1, le=MAX_STREAMS)]
SizeParam: TypeAlias = Annotated[int, QueryParameter(ge=1, le=MAX_STREAM_TOKENS)]
PaceParam: TypeAlias = Annotated[float, QueryParameter(ge=0, le=10)]
SeedParam: TypeAlias = Annotated[int, QueryParameter(ge=0)]


def _allow(*_args: object) -> bool:
    return True


class CountingReads:
    """A store that counts its ``read`` calls per stream (mixed into a SQL store)."""

    reads: collections.Counter[uuid.UUID]

    async def read(
        self, stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
    ) -> ReadResult:
        self.reads[stream_id] += 1
        result: ReadResult = await super().read(stream_id, offset, max_bytes)  # type: ignore[misc]
        return result


class _CountingAsyncpgStore(CountingReads, AsyncpgStore):
    pass


class _CountingPsycopgStore(CountingReads, PsycopgStore):
    pass


def _counting_store(url: str, settings: Settings) -> _CountingAsyncpgStore | _CountingPsycopgStore:
    """The store ``pts serve`` would open (driver, pool sizes), counting its reads."""
    kind = _CountingAsyncpgStore if settings.driver == "asyncpg" else _CountingPsycopgStore
    store = kind(url, min_size=settings.pool_min_size, max_size=settings.pool_max_size)
    store.reads = collections.Counter()
    return store


class _GcPauses:
    """The garbage collector's pauses in this process, per generation (via ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.max = [0.0, 0.0, 0.0]
        """Longest pause since the last :meth:`report` with ``reset_max``."""
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        gen = min(info.get("generation", 0), 2)
        self.count[gen] += 1
        self.total[gen] += pause
        self.max[gen] = max(self.max[gen], pause)

    def report(self, reset_max: bool) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            "collections": list(self.count),
            "pause_s": list(self.total),
            "max_pause_s": list(self.max),
        }
        if reset_max:
            self.max = [0.0, 0.0, 0.0]
        return out


class _FanoutServer:
    """The bench server's state: the streams' writers, producers and counters."""

    def __init__(
        self, pts: PersistentTextStreaming, store: _CountingAsyncpgStore | _CountingPsycopgStore
    ) -> None:
        self.pts = pts
        self.store = store
        self.writers: dict[uuid.UUID, StreamWriter] = {}
        self.index: dict[uuid.UUID, int] = {}
        self.producers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.failures: dict[uuid.UUID, str] = {}
        self.nofile = raise_open_files_limit()
        self.gc = _GcPauses()
        gc.callbacks.append(self.gc)

    async def create(self, count: int) -> list[uuid.UUID]:
        ids = []
        for _ in range(count):
            writer = await self.pts.create_write_stream(metadata={"bench": "fanout"})
            self.index[writer.stream_id] = len(self.index)
            self.writers[writer.stream_id] = writer
            ids.append(writer.stream_id)
        return ids

    def produce(
        self, sentences: int, tokens_per_sentence: int, pace: float, seed: int
    ) -> list[uuid.UUID]:
        started = []
        for stream_id, writer in self.writers.items():
            if stream_id in self.producers:
                continue
            index = self.index[stream_id]
            tokens = stream_tokens(index, sentences, tokens_per_sentence)
            rng = random.Random(seed * 1_000_003 + index)
            task = asyncio.create_task(
                self._produce(writer, tokens, pace, tokens_per_sentence, rng),
                name=f"bench-producer-{stream_id}",
            )
            task.add_done_callback(functools.partial(self._produced, stream_id))
            self.producers[stream_id] = task
            started.append(stream_id)
        return started

    @staticmethod
    async def _produce(
        writer: StreamWriter,
        tokens: Sequence[str],
        pace: float,
        tokens_per_sentence: int,
        rng: random.Random,
    ) -> None:
        # Streams do not flush in lockstep: each starts within one sentence.
        # Tokens are due at fixed times (as a model's arrive from its network),
        # so a busy event loop delays them but does not slow the stream down.
        loop = asyncio.get_running_loop()
        due = loop.time() + rng.uniform(0, pace * tokens_per_sentence)
        for i, token in enumerate(tokens):
            if i:
                due += pace * rng.uniform(0.5, 1.5)
            if pace:
                await asyncio.sleep(max(0.0, due - loop.time()))
            await writer.write(token)
        await writer.close()

    def _produced(self, stream_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self.failures[stream_id] = "cancelled"
        elif (exc := task.exception()) is not None:
            self.failures[stream_id] = f"{type(exc).__name__}: {exc}"

    def metrics(self, reset_max: bool = False) -> dict[str, Any]:
        stats = self.pts.stats()
        reads = self.store.reads
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "tail_reads": stats.tail_reads,
            "store_reads": sum(reads.values()),
            "reads_per_stream": {str(k): reads[k] for k in self.writers},
            "tails": stats.tails,
            "subscribers": stats.subscribers,
            "appends": {str(k): w.flusher.appends for k, w in self.writers.items()},
            "producing": sum(1 for t in self.producers.values() if not t.done()),
            "failures": {str(k): v for k, v in self.failures.items()},
            "pool_max": self.store.max_size,
            "listener_connected": stats.listener_connected,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_mb": usage.ru_maxrss / 1024,
            "open_files": _open_files(),
            "nofile_limit": self.nofile,
            "poll_interval_s": self.pts.poll_interval,
            "gc": self.gc.report(reset_max),
            "pid": os.getpid(),
        }


def _open_files() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def create_fanout_app(*, stale_after: float = 30.0, sweep_interval: float = 5.0) -> Litestar:
    """The fan-out benchmark server (an app factory for uvicorn; ``pts bench cluster``'s node).

    Reads ``PTS_DATABASE_URL`` (or ``DATABASE_URL``) and ``PTS_DRIVER`` and the
    pool sizes like ``pts serve``; defaults for everything else (flush policy,
    ``poll_interval``). Raises its soft open-file limit to the
    hard one. Routes:

    - the plugin's ``/streams`` routes, open to everyone (``GET /streams/{id}/events``);
    - ``POST /bench/streams?count=N``: create N streams with a writer each; ``{"ids"}``;
    - ``POST /bench/produce?sentences=&tokens_per_sentence=&pace=&seed=``: start
      a producer for every stream created and not yet produced; ``{"ids"}``;
    - ``GET /bench/metrics?reset_max=``: reads, subscribers, appends, pool, CPU,
      garbage-collector pauses (see :meth:`_FanoutServer.metrics`);
    - ``GET /healthz``.
    """
    settings = Settings.from_env()
    url = settings.database_url
    if url is None:
        raise RuntimeError("the fan-out bench server needs PTS_DATABASE_URL")
    store = _counting_store(url, settings)
    pts = PersistentTextStreaming(
        dsn=url,
        driver=settings.driver,
        store=store,
        stale_after=stale_after,
        sweep_interval=sweep_interval,
    )
    server = _FanoutServer(pts, store)

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @post("/bench/streams", status_code=200)
    async def create_streams(count: CountParam = 10) -> dict[str, list[str]]:
        return {"ids": [str(i) for i in await server.create(count)]}

    @post("/bench/produce", status_code=200, sync_to_thread=False)
    def produce(
        sentences: SizeParam = 40,
        tokens_per_sentence: SizeParam = 25,
        pace: PaceParam = 0.02,
        seed: SeedParam = 0,
    ) -> dict[str, list[str]]:
        started = server.produce(sentences, tokens_per_sentence, pace, seed)
        return {"ids": [str(i) for i in started]}

    @get("/bench/metrics", sync_to_thread=False)
    def metrics(reset_max: FromQuery[bool] = False) -> dict[str, Any]:
        """``reset_max``: start a new window for the longest GC pauses."""
        return server.metrics(reset_max)

    return Litestar(
        route_handlers=[healthz, create_streams, produce, metrics],
        plugins=[PTSPlugin(pts, authorize=_allow)],
        # As `pts serve` does (pts.http.app.create_app).
        on_startup=gc_startup_hooks(),
    )

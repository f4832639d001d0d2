"""The server of ``pts bench fanout``: an app factory for uvicorn, and the streams' text.

The server process both serves the SSE subscribers and drives the streams (a
producer task per stream, writing through a
:class:`~pts.driver.StreamWriter`), as a real deployment's does. It also
counts what the benchmark reports about it: the hub's tail reads, every
``store.read``, subscribers per stream, the pool, its CPU time.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import random
import resource
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, TypeAlias

import asyncpg
from litestar import Litestar, get, post
from litestar.params import FromQuery, QueryParameter

from pts.bench.common import raise_open_files_limit
from pts.core import PersistentTextStreaming
from pts.driver import StreamWriter
from pts.http.app import freeze_gc
from pts.hub import Hub
from pts.models import ReadResult
from pts.plugin import PTSPlugin
from pts.settings import Settings

__all__ = ["APP_FACTORY", "MAX_STREAMS", "MAX_TOKENS", "create_fanout_app", "stream_tokens"]

APP_FACTORY = "pts.bench.fanout_app:create_fanout_app"

MAX_TOKENS = 100_000
MAX_STREAMS = 1_000

# ~4-5 characters a token, with a few multi-byte characters, so byte offsets
# (SSE ids, NOTIFY sizes) differ from character offsets.
_TEXT = (
    "the model writes an answer one token at a time while users wait and every "
    "word reaches each subscriber of the stream through one read per flush café "
    "naïve résumé so nobody polls and nothing is lost or sent twice über façade"
)
_VOCABULARY = tuple(_TEXT.split(" "))


def stream_tokens(index: int, sentences: int, tokens_per_sentence: int) -> tuple[str, ...]:
    """Stream ``index``'s text: ``sentences`` sentences of ``tokens_per_sentence`` tokens.

    Each sentence's last token ends with ``". "``; no other token has a
    sentence end. Deterministic, and different for every stream.
    """
    if sentences < 1 or tokens_per_sentence < 1:
        raise ValueError("sentences and tokens_per_sentence must be at least 1")
    if sentences * tokens_per_sentence > MAX_TOKENS:
        raise ValueError(f"at most {MAX_TOKENS} tokens per stream")
    out: list[str] = []
    n = len(_VOCABULARY)
    for s in range(sentences):
        for t in range(tokens_per_sentence):
            i = s * tokens_per_sentence + t
            word = _VOCABULARY[(i * 7 + index * 11) % n]
            token = word.capitalize() if t == 0 else " " + word
            out.append(token + ". " if t == tokens_per_sentence - 1 else token)
    return tuple(out)


# -- the server ---------------------------------------------------------------------------

CountParam: TypeAlias = Annotated[int, QueryParameter(ge=1, le=MAX_STREAMS)]
SizeParam: TypeAlias = Annotated[int, QueryParameter(ge=1, le=MAX_TOKENS)]
PaceParam: TypeAlias = Annotated[float, QueryParameter(ge=0, le=10)]
SeedParam: TypeAlias = Annotated[int, QueryParameter(ge=0)]


def _allow(*_args: object) -> bool:
    return True


class _RetiringTails(dict[uuid.UUID, Any]):
    """``hub.tails`` that remembers the reads of the tails it removes."""

    def __init__(self, retired: dict[uuid.UUID, int]) -> None:
        super().__init__()
        self.retired = retired

    def __delitem__(self, key: uuid.UUID) -> None:
        reads = int(getattr(self[key], "reads", 0))
        self.retired[key] = self.retired.get(key, 0) + reads
        super().__delitem__(key)


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

    def __init__(self, pts: PersistentTextStreaming) -> None:
        self.pts = pts
        self.writers: dict[uuid.UUID, StreamWriter] = {}
        self.index: dict[uuid.UUID, int] = {}
        self.producers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.failures: dict[uuid.UUID, str] = {}
        self.store_reads = 0
        self.retired: dict[uuid.UUID, int] = {}
        self.nofile = raise_open_files_limit()
        self.gc = _GcPauses()
        gc.callbacks.append(self.gc)

    @property
    def hub(self) -> Hub:
        hub = self.pts._hub
        if hub is None:
            raise RuntimeError("pts is not open")
        return hub

    async def instrument(self, _app: Litestar) -> None:
        """Count every ``store.read`` and keep the reads of retired tails (after pts opened)."""
        store = self.pts.store
        original = store.read

        async def read(
            stream_id: uuid.UUID, offset: int = 0, max_bytes: int | None = None
        ) -> ReadResult:
            self.store_reads += 1
            return await original(stream_id, offset, max_bytes)

        store.read = read  # type: ignore[method-assign]
        self.hub.tails = _RetiringTails(self.retired)

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
        hub = self.hub
        tail_reads = dict(self.retired)
        per_stream: dict[str, int] = {}
        for stream_id, tail in hub.tails.items():
            tail_reads[stream_id] = tail_reads.get(stream_id, 0) + tail.reads
            per_stream[str(stream_id)] = len(tail.subscribers)
        store = self.pts.store
        pool = getattr(store, "_pool", None)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        listener = self.pts._listener
        return {
            "hub_reads": hub.reads,
            "store_reads": self.store_reads,
            "tails": len(hub.tails),
            "subscribers": sum(per_stream.values()),
            "subscribers_per_stream": per_stream,
            "tail_reads": {str(k): v for k, v in tail_reads.items()},
            "appends": {str(k): w.flusher.appends for k, w in self.writers.items()},
            "producing": sum(1 for t in self.producers.values() if not t.done()),
            "failures": {str(k): v for k, v in self.failures.items()},
            "pool": {
                "max": getattr(store, "max_size", None),
                "size": pool.get_size() if isinstance(pool, asyncpg.Pool) else None,
                "idle": pool.get_idle_size() if isinstance(pool, asyncpg.Pool) else None,
            },
            "listener_connected": listener is not None and listener.connected,
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


def create_fanout_app() -> Litestar:
    """The fan-out benchmark server (an app factory for uvicorn).

    Reads ``PTS_DATABASE_URL`` / ``DATABASE_URL`` (else the embedded Postgres)
    and ``PTS_DRIVER`` like ``pts serve``; defaults for everything else (flush
    policy, pool, ``poll_interval``). Raises its soft open-file limit to the
    hard one. Routes:

    - the plugin's ``/streams`` routes, open to everyone (``GET /streams/{id}/events``);
    - ``POST /bench/streams?count=N``: create N streams with a writer each; ``{"ids"}``;
    - ``POST /bench/produce?sentences=&tokens_per_sentence=&pace=&seed=``: start
      a producer for every stream created and not yet produced; ``{"ids"}``;
    - ``GET /bench/metrics?reset_max=``: reads, subscribers, appends, pool, CPU,
      garbage-collector pauses (see :meth:`_FanoutServer.metrics`);
    - ``GET /healthz``.
    """
    pts = PersistentTextStreaming(driver=Settings.from_env().driver)
    server = _FanoutServer(pts)

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
        # As `pts serve` does (pts.app.create_app).
        on_startup=[freeze_gc, server.instrument],
    )

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

The server is uvicorn running :func:`create_bench_app` in a subprocess on a
free 127.0.0.1 port. The load client is the minimal asyncio HTTP/1.1 client of
:mod:`pts.bench.common` (one connection per request, ``Connection: close``),
not httpx: its per-chunk cost is a few microseconds, so it distorts neither
TTFB nor the ratio. Times start before the client connects.

The bench creates a database ``pts_bench_<random>`` on the given server and
drops it at the end; without the privilege it uses the given database (counts
are per stream, so they stay exact). Nothing here is a test: no figure is
asserted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, TypeAlias

import asyncpg
from litestar import Litestar, Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from pts.bench.common import (
    BenchError,
    Database,
    Progress,
    bench_database,
    bench_server,
    http_request,
    machine,
    ms,
    run_benchmark,
    server_info,
    summarize,
    table,
    value_range,
)
from pts.core import PersistentTextStreaming
from pts.driver import Append
from pts.http.app import freeze_gc
from pts.models import StreamStatus
from pts.plugin import PTSPlugin
from pts.settings import Settings
from pts.store import SQLStore, create_store

__all__ = [
    "BenchError",
    "DrivenConfig",
    "answer_tokens",
    "create_bench_app",
    "format_report",
    "run_driven",
    "summarize",
]

logger = logging.getLogger("pts.bench")

APP_FACTORY = "pts.bench.driven:create_bench_app"
CLIENT = "minimal asyncio HTTP/1.1 client (one connection per request, Connection: close)"

# Targets from the issue (reported, never asserted).
TARGET_TTLB_RATIO = 1.05
TARGET_TTFB_DELTA_MS = 1.0

# Hang guards, far beyond any sane figure.
REQUEST_GUARD = 120.0
PERSIST_GUARD = 120.0

MAX_TOKENS = 1_000_000
MAX_PACE = 1.0

Kind: TypeAlias = Literal["bare", "pts", "paced", "naive"]
"""``paced``: a pts answer whose generator sleeps between tokens."""

_TEXT = (
    "the model writes an answer one token at a time while the user waits and "
    "every word goes to the browser at once and to postgres in whole sentences "
    "so a reload or a second viewer finds the text where it was left off without "
    "paying for it twice or slowing down the stream"
)
_WORDS = tuple(_TEXT.split(" "))


def answer_tokens(tokens: int, sentences: int) -> tuple[str, ...]:
    """The benchmark's answer: ``tokens`` tokens forming ``sentences`` sentences.

    Sentences are as even as possible; the last token of each ends with
    ``". "``, no other token contains a sentence end. Deterministic, so the
    client knows the exact bytes the server must deliver.
    """
    if not 1 <= tokens <= MAX_TOKENS:
        raise ValueError(f"tokens must be between 1 and {MAX_TOKENS}")
    if not 1 <= sentences <= tokens:
        raise ValueError("sentences must be between 1 and tokens")
    return _answer_tokens(tokens, sentences)


@functools.lru_cache(maxsize=16)
def _answer_tokens(tokens: int, sentences: int) -> tuple[str, ...]:
    ends = {(k + 1) * tokens // sentences - 1 for k in range(sentences)}
    out: list[str] = []
    first = True
    for i in range(tokens):
        word = _WORDS[(i * 7) % len(_WORDS)]
        token = word.capitalize() if first else " " + word
        first = i in ends
        out.append(token + ". " if first else token)
    return tuple(out)


# -- the server side ----------------------------------------------------------------

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

TokensParam: TypeAlias = Annotated[int, QueryParameter(ge=1, le=MAX_TOKENS)]
SentencesParam: TypeAlias = Annotated[int, QueryParameter(ge=1, le=MAX_TOKENS)]
PaceParam: TypeAlias = Annotated[float, QueryParameter(ge=0, le=MAX_PACE)]
AnyRequest: TypeAlias = Request[Any, Any, Any]


def _deny(*_args: object) -> bool:
    return False


def create_bench_app() -> Litestar:
    """The benchmark server (an app factory for uvicorn).

    Reads ``PTS_DATABASE_URL`` / ``DATABASE_URL`` (else the embedded Postgres)
    and ``PTS_DRIVER`` like ``pts serve``; the default :class:`FlushPolicy`.
    Routes (``tokens`` and ``sentences`` are query parameters, default 1000 and 40):

    - ``POST /bench/bare``: the answer through a bare ``Stream`` (no database);
    - ``POST /bench/pts/{id}``: the answer through ``pts.stream()`` on pending stream ``id``;
      with ``pace`` > 0 (seconds) the generator sleeps that long between tokens;
    - ``POST /bench/naive/{id}``: claim, then one awaited ``store.append`` per token
      before the token is sent (the last append finishes the stream);
    - ``GET /healthz``.

    The plugin's own ``/streams`` routes refuse everyone: the bench needs none.
    """
    pts = PersistentTextStreaming(driver=Settings.from_env().driver)

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, bool]:
        """Up once the lifespan (which opens the pool) completed."""
        return {"ok": True}

    @post("/bench/bare", status_code=200)
    async def bare(tokens: TokensParam = 1000, sentences: SentencesParam = 40) -> Stream:
        """The answer through a bare Litestar streaming response."""
        words = answer_tokens(tokens, min(sentences, tokens))

        async def body() -> AsyncIterator[bytes]:
            for token in words:
                yield token.encode()

        return Stream(body(), media_type="text/plain", headers=_STREAM_HEADERS)

    @post("/bench/pts/{stream_id:uuid}", status_code=200)
    async def drive(
        request: AnyRequest,
        stream_id: FromPath[uuid.UUID],
        tokens: TokensParam = 1000,
        sentences: SentencesParam = 40,
        pace: PaceParam = 0.0,
    ) -> Stream:
        """The answer through ``pts.stream()``, ``pace`` seconds between tokens."""
        words = answer_tokens(tokens, min(sentences, tokens))

        async def generate(_request: AnyRequest, _stream_id: uuid.UUID, append: Append) -> None:
            if not pace:
                for token in words:
                    await append(token)
                return
            for i, token in enumerate(words):
                if i:
                    await asyncio.sleep(pace)
                await append(token)

        return await pts.stream(request, stream_id, generate)

    @post("/bench/naive/{stream_id:uuid}", status_code=200)
    async def naive(
        stream_id: FromPath[uuid.UUID],
        tokens: TokensParam = 1000,
        sentences: SentencesParam = 40,
    ) -> Stream:
        """The answer with one awaited database write per token."""
        words = answer_tokens(tokens, min(sentences, tokens))
        store = pts.store
        info = await store.claim(stream_id)

        async def body() -> AsyncIterator[bytes]:
            offset = info.size
            last = len(words) - 1
            for i, token in enumerate(words):
                data = token.encode()
                finish = StreamStatus.DONE if i == last else None
                offset = await store.append(stream_id, data, offset=offset, finish=finish)
                yield data

        return Stream(body(), media_type="text/plain", headers=_STREAM_HEADERS)

    return Litestar(
        route_handlers=[healthz, bare, drive, naive],
        plugins=[PTSPlugin(pts, authorize=_deny)],
        on_startup=[freeze_gc],  # as `pts serve` does (pts.app.create_app)
    )


# -- the load client --------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    """One request as the client saw it (times in seconds since ``start``)."""

    kind: Kind
    start: float
    ttfb: float
    ttlb: float
    status: int
    nbytes: int
    body_ok: bool
    stream_id: uuid.UUID | None = None

    @property
    def end(self) -> float:
        """When the last byte arrived (``perf_counter`` time)."""
        return self.start + self.ttlb


async def _fetch(
    port: int, kind: Kind, path: str, expected: bytes, stream_id: uuid.UUID | None = None
) -> Sample:
    async with asyncio.timeout(REQUEST_GUARD):
        status, body, start, ttfb, ttlb = await http_request(port, "POST", path)
    if status != 200:
        detail = body[:300].decode("utf-8", "replace")
        raise BenchError(f"POST {path} answered {status}: {detail}")
    return Sample(kind, start, ttfb, ttlb, status, len(body), body == expected, stream_id)


class WriteCounter:
    """Counts each tracked stream's committed changes from its ``pts_v1`` notifications."""

    def __init__(self) -> None:
        self.commits: dict[uuid.UUID, int] = {}
        self.closed_at: dict[uuid.UUID, float] = {}
        self.final_status: dict[uuid.UUID, str] = {}
        self._closed: dict[uuid.UUID, asyncio.Event] = {}

    def track(self, stream_id: uuid.UUID) -> None:
        """Count ``stream_id``'s changes from now on (before it is claimed)."""
        self.commits[stream_id] = 0
        self._closed[stream_id] = asyncio.Event()

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        """The asyncpg listener callback."""
        note = json.loads(str(payload))
        stream_id = uuid.UUID(note["id"])
        if stream_id not in self._closed or note["status"] == StreamStatus.PENDING:
            return
        self.commits[stream_id] += 1
        if note["closed"]:
            self.closed_at[stream_id] = time.perf_counter()
            self.final_status[stream_id] = note["status"]
            self._closed[stream_id].set()

    async def wait_closed(self, stream_ids: Sequence[uuid.UUID]) -> None:
        """Wait until every stream in ``stream_ids`` has finished (bounded)."""
        try:
            async with asyncio.timeout(PERSIST_GUARD):
                for stream_id in stream_ids:
                    await self._closed[stream_id].wait()
        except TimeoutError:
            open_ = sum(1 for s in stream_ids if not self._closed[s].is_set())
            raise BenchError(
                f"{open_} stream(s) did not finish within {PERSIST_GUARD:g} s"
            ) from None


# -- the configuration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrivenConfig:
    """The parameters of one run of ``pts bench driven``."""

    dsn: str
    tokens: int = 1000
    sentences: int = 40
    requests: int = 50
    naive_requests: int = 10
    paced_requests: int = 3
    pace: float = 0.002
    streams: int = 200
    rounds: int = 3
    warmup: int = 3
    timeout: float = 300.0

    def __post_init__(self) -> None:
        answer_tokens(self.tokens, self.sentences)  # validates both
        if self.requests < 1 or self.streams < 1 or self.rounds < 1:
            raise ValueError("requests, streams and rounds must be at least 1")
        if not 0 <= self.naive_requests <= self.requests:
            raise ValueError("naive_requests must be between 0 and requests")
        if self.paced_requests < 0 or not 0 < self.pace <= MAX_PACE:
            raise ValueError(f"paced_requests must be >= 0 and pace in (0, {MAX_PACE:g}]")
        if self.warmup < 0 or self.timeout <= 0:
            raise ValueError("warmup must be >= 0 and timeout > 0")

    def query(self) -> str:
        """The query string naming the answer."""
        return f"?tokens={self.tokens}&sentences={self.sentences}"

    def parameters(self) -> dict[str, Any]:
        """The parameters as reported (no URL: it may hold a password)."""
        params = asdict(self)
        del params["dsn"]
        return params


@dataclass(frozen=True, slots=True)
class _Batch:
    """``streams`` requests sent at once."""

    kind: Kind
    wall: float
    """Seconds from sending the first request to the last byte of the last response."""
    samples: list[Sample]
    persisted: float | None
    """Seconds from sending the first request until every stream was finished in Postgres."""


@dataclass
class _Run:
    """What one run collects."""

    config: DrivenConfig
    expected: bytes
    port: int = 0
    store: SQLStore | None = None
    counter: WriteCounter = field(default_factory=WriteCounter)
    sequential: list[Sample] = field(default_factory=list)
    batches: list[_Batch] = field(default_factory=list)

    async def new_stream(self) -> uuid.UUID:
        assert self.store is not None
        stream_id = (await self.store.create_stream()).id
        self.counter.track(stream_id)
        return stream_id

    async def one(self, kind: Kind) -> Sample:
        query = self.config.query()
        if kind == "bare":
            return await _fetch(self.port, kind, "/bench/bare" + query, self.expected)
        stream_id = await self.new_stream()
        if kind == "paced":
            path = f"/bench/pts/{stream_id}{query}&pace={self.config.pace!r}"
        else:
            path = f"/bench/{kind}/{stream_id}{query}"
        sample = await _fetch(self.port, kind, path, self.expected, stream_id)
        await self.counter.wait_closed([stream_id])
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


async def _batch(run: _Run, kind: Kind) -> _Batch:
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
        await run.counter.wait_closed(stream_ids)
        persisted = max(run.counter.closed_at[s] for s in stream_ids) - t0
    return _Batch(kind, wall, list(samples), persisted)


# -- the database ---------------------------------------------------------------------------


async def _chunk_rows(
    url: str, stream_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, int]]:
    """Per stream: rows in ``pts.chunks`` and the bytes they hold."""
    conn = await asyncpg.connect(url, timeout=15)
    try:
        records = await conn.fetch(
            "SELECT stream_id, count(*) AS n, sum(octet_length(data)) AS bytes "
            "FROM pts.chunks WHERE stream_id = ANY($1::uuid[]) GROUP BY stream_id",
            list(stream_ids),
        )
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
            listener = await asyncpg.connect(db.url, timeout=15)
            try:
                await listener.add_listener("pts_v1", run.counter.on_notify)
                run.store = create_store(db.url, "asyncpg", min_size=1, max_size=4)
                await run.store.open()
                try:
                    progress(f"starting the bench server ({APP_FACTORY}) on {db.info['database']}")
                    async with bench_server(db.url, APP_FACTORY) as port:
                        run.port = port
                        await _sequential(run, progress)
                        await _paced(run, progress)
                        await _concurrent(run, progress)
                finally:
                    await run.store.close()
                ids = [s.stream_id for s in run.sequential if s.stream_id is not None]
                ids += [s.stream_id for b in run.batches for s in b.samples if s.stream_id]
                rows = await _chunk_rows(db.url, ids)
            finally:
                await listener.close()
            result = _results(run, db, rows)
    result["elapsed_s"] = time.perf_counter() - started
    _check(result)
    return result


def _results(run: _Run, db: Database, rows: dict[uuid.UUID, tuple[int, int]]) -> dict[str, Any]:
    config = run.config
    by_kind: dict[Kind, list[Sample]] = {"bare": [], "pts": [], "paced": [], "naive": []}
    for sample in run.sequential:
        by_kind[sample.kind].append(sample)

    def timing(samples: Sequence[Sample]) -> dict[str, Any]:
        return {
            "requests": len(samples),
            "ttfb_ms": summarize([s.ttfb for s in samples], 1000),
            "ttlb_ms": summarize([s.ttlb for s in samples], 1000),
        }

    def writes(samples: Sequence[Sample]) -> dict[str, Any]:
        ids = [s.stream_id for s in samples if s.stream_id is not None]
        lags = [run.counter.closed_at[s.stream_id] - s.end for s in samples if s.stream_id]
        return {
            "answers": len(ids),
            "commits": summarize([run.counter.commits[i] for i in ids]),
            "rows": summarize([rows.get(i, (0, 0))[0] for i in ids]),
            "persisted_bytes": summarize([rows.get(i, (0, 0))[1] for i in ids]),
            "done": sum(1 for i in ids if run.counter.final_status.get(i) == "done"),
            "persisted_after_last_byte_ms": summarize(lags, 1000),
        }

    bare, pts, naive = by_kind["bare"], by_kind["pts"], by_kind["naive"]
    paced = by_kind["paced"]
    bare_t, pts_t = timing(bare), timing(pts)
    for entry, samples in ((bare_t, bare), (pts_t, pts)):
        entry["samples_ms"] = {
            "ttfb": [round(s.ttfb * 1000, 4) for s in samples],
            "ttlb": [round(s.ttlb * 1000, 4) for s in samples],
        }
    ratio = pts_t["ttlb_ms"]["median"] / bare_t["ttlb_ms"]["median"]
    delta = pts_t["ttfb_ms"]["median"] - bare_t["ttfb_ms"]["median"]

    concurrency: dict[str, Any] = {"streams": config.streams, "rounds": config.rounds}
    for kind in ("bare", "pts"):
        batches = [b for b in run.batches if b.kind == kind]
        samples = [s for b in batches for s in b.samples]
        entry = {
            **timing(samples),
            "tokens_per_s": summarize([config.streams * config.tokens / b.wall for b in batches]),
            "wall_s": summarize([b.wall for b in batches]),
        }
        if kind == "pts":
            entry.update(writes(samples))
            persisted = [b.persisted for b in batches if b.persisted is not None]
            entry["all_persisted_s"] = summarize(persisted)
        concurrency[kind] = entry
    cb, cp = concurrency["bare"], concurrency["pts"]
    concurrency["ttlb_ratio"] = cp["ttlb_ms"]["median"] / cb["ttlb_ms"]["median"]
    concurrency["tokens_per_s_ratio"] = cp["tokens_per_s"]["median"] / cb["tokens_per_s"]["median"]

    everything = run.sequential + [s for b in run.batches for s in b.samples]
    return {
        "benchmark": "driven",
        "machine": machine(),
        "parameters": config.parameters(),
        "server": server_info(APP_FACTORY),
        "client": CLIENT,
        "database": {**db.info, "fresh": db.fresh},
        "answer": {
            "tokens": config.tokens,
            "sentences": config.sentences,
            "bytes": len(run.expected),
        },
        "overhead": {
            "bare": bare_t,
            "pts": pts_t,
            "ttlb_ratio": ratio,
            "ttfb_delta_ms": delta,
            "targets": {
                "ttlb_ratio_max": TARGET_TTLB_RATIO,
                "ttfb_delta_max_ms": TARGET_TTFB_DELTA_MS,
                "ttlb_met": ratio <= TARGET_TTLB_RATIO,
                "ttfb_met": delta <= TARGET_TTFB_DELTA_MS,
            },
        },
        "writes": {
            "pts": {**writes(pts), "ttlb_ms": pts_t["ttlb_ms"]},
            "pts_paced": {
                **writes(paced),
                "ttlb_ms": timing(paced)["ttlb_ms"],
                "pace_s": config.pace,
                "generation_ms": (config.tokens - 1) * config.pace * 1000,
            },
            "naive": {**writes(naive), "ttlb_ms": timing(naive)["ttlb_ms"]},
        },
        "concurrency": concurrency,
        "checks": {
            "responses": len(everything),
            "bytes_expected": len(run.expected) * len(everything),
            "bytes_delivered": sum(s.nbytes for s in everything),
            "body_mismatches": sum(1 for s in everything if not s.body_ok),
        },
    }


def _check(result: dict[str, Any]) -> None:
    """Refuse figures measured on wrong answers."""
    checks = result["checks"]
    if checks["body_mismatches"] or checks["bytes_delivered"] != checks["bytes_expected"]:
        raise BenchError(
            f"{checks['body_mismatches']} response(s) differed from the answer "
            f"({checks['bytes_delivered']} bytes delivered, {checks['bytes_expected']} expected)"
        )
    answer = result["answer"]["bytes"]
    for name, section in (
        ("pts", result["writes"]["pts"]),
        ("paced pts", result["writes"]["pts_paced"]),
        ("naive", result["writes"]["naive"]),
        ("concurrent pts", result["concurrency"]["pts"]),
    ):
        if section["answers"] and (
            section["done"] != section["answers"]
            or section["persisted_bytes"]["min"] != answer
            or section["persisted_bytes"]["max"] != answer
        ):
            raise BenchError(f"{name}: not every answer was persisted whole and done")


# -- the report -----------------------------------------------------------------------------


def format_report(result: dict[str, Any]) -> str:
    """The figures as a readable table."""
    p, a, m = result["parameters"], result["answer"], result["machine"]
    srv, db = result["server"], result["database"]
    over, writes, conc = result["overhead"], result["writes"], result["concurrency"]
    lines = [
        f"pts bench driven: {a['tokens']} tokens, {a['sentences']} sentences, "
        f"{a['bytes']:,} bytes per answer",
        f"  machine: {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}",
        f"  server:  {srv['runner']} ({srv['loop']}, {srv['http']}), driver {srv['driver']}, "
        f"pool max {srv['pool_max_size']}",
        f"  client:  {result['client']}",
        f"  database: Postgres {db['server_version']} (fsync {db['fsync']}, synchronous_commit "
        f"{db['synchronous_commit']}), {'fresh' if db['fresh'] else 'shared'} database",
        "",
        f"Driving-client overhead ({p['requests']} requests each, one at a time, interleaved)",
    ]
    rows = []
    for kind in ("bare", "pts"):
        t = over[kind]
        rows.append(
            [
                kind,
                ms(t["ttfb_ms"]["median"]),
                ms(t["ttfb_ms"]["p90"]),
                ms(t["ttlb_ms"]["median"]),
                ms(t["ttlb_ms"]["p90"]),
            ]
        )
    lines += table(["", "TTFB median", "TTFB p90", "TTLB median", "TTLB p90"], rows)
    targets = over["targets"]
    lines += [
        f"  TTLB pts/bare: {over['ttlb_ratio']:.3f} (target <= {targets['ttlb_ratio_max']}: "
        f"{'met' if targets['ttlb_met'] else 'NOT met'}); "
        f"TTFB pts-bare: {over['ttfb_delta_ms']:+.2f} ms (target <= "
        f"{targets['ttfb_delta_max_ms']:g} ms: {'met' if targets['ttfb_met'] else 'NOT met'})",
        "",
        f"Database writes per answer ({a['tokens']} tokens, {a['sentences']} sentences; "
        "medians [min-max])",
    ]
    paced = writes["pts_paced"]
    pace_ms = paced["pace_s"] * 1000
    labels = {
        "pts": "pts, no sleeps: degenerate",
        "pts_paced": f"pts, paced {pace_ms:g} ms/token",
        "naive": "naive, a commit per token",
    }
    rows = []
    for kind in ("pts", "pts_paced", "naive"):
        w = writes[kind]
        if not w["answers"]:
            continue
        rows.append(
            [
                f"{labels[kind]} ({w['answers']} answers)",
                value_range(w["commits"]),
                value_range(w["rows"]),
                ms(w["ttlb_ms"]["median"]),
                ms(w["persisted_after_last_byte_ms"]["median"]),
            ]
        )
    lines += table(["", "commits", "rows", "TTLB median", "done after last byte"], rows)
    lines += [
        "  no sleeps: the generator makes the whole answer in a few ms, before the first",
        "    flush commits, so it lands in one or two appends: not what an answer costs;",
    ]
    if paced["answers"]:
        lines += [
            f"  paced: the generator sleeps {pace_ms:g} ms between tokens as a model streams "
            f"(>= {paced['generation_ms'] / 1000:.1f} s per answer):",
            "    the figure to compare with naive (one append per sentence, plus one whenever",
            f"    {srv['flush_policy']['max_delay'] * 1000:g} ms pass without a sentence end);",
        ]
    lines += [
        "  commits: the claim + every append (incl. the final status), counted from NOTIFY;",
        "  rows: the stream's rows in pts.chunks;",
        "  done after last byte: until the stream is finished in Postgres (< 0: before)",
        "",
        f"Concurrency ({conc['streams']} streams at once, {conc['rounds']} round(s) each)",
    ]
    rows = []
    for kind in ("bare", "pts"):
        c = conc[kind]
        rows.append(
            [
                kind,
                f"{c['tokens_per_s']['median']:,.0f}",
                ms(c["ttfb_ms"]["median"]),
                ms(c["ttlb_ms"]["median"]),
                ms(c["ttlb_ms"]["p90"]),
            ]
        )
    lines += table(["", "tokens/s", "TTFB median", "TTLB median", "TTLB p90"], rows)
    cp, cb = conc["pts"], conc["bare"]
    lines += [
        f"  TTLB pts/bare: {conc['ttlb_ratio']:.3f}; tokens/s pts/bare: "
        f"{conc['tokens_per_s_ratio']:.3f}; batch wall median: bare "
        f"{cb['wall_s']['median']:.2f} s, pts {cp['wall_s']['median']:.2f} s",
    ]
    if cb["ttfb_ms"]["median"] > cb["ttlb_ms"]["median"] / 2:
        lines.append(
            "  (bare TTFB ~ TTLB: its generator never awaits, so bare responses went out one "
            "after another; pts ones interleave. Compare tokens/s and batch wall.)"
        )
    lines += [
        f"  pts writes per answer under load: {value_range(cp['commits'])} commits, "
        f"{value_range(cp['rows'])} rows; all persisted "
        f"{cp['all_persisted_s']['median']:.2f} s after the batch started",
        "",
        f"checks: {result['checks']['responses']} responses, "
        f"{result['checks']['bytes_delivered']:,} bytes delivered = expected, "
        f"{result['checks']['body_mismatches']} mismatches; took {result['elapsed_s']:.1f} s",
    ]
    return "\n".join(lines)

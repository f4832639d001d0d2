"""What every ``pts bench`` benchmark needs besides its load client (:mod:`pts.bench.client`).

- :func:`bench_server`: uvicorn serving an app factory in a subprocess (its own
  session) on a free 127.0.0.1 port, always terminated on exit.
- :func:`pts_serve`: ``pts serve --no-auth`` (N workers) in a subprocess, the same way.
- :func:`bench_database`: a fresh ``pts_bench_<random>`` database, migrated, and
  dropped at the end (the given database when it cannot be created);
  :func:`bench_queries`: the benchmarks' own SQL (``sql/bench.sql``).
- :func:`run_benchmark`: runs a benchmark's coroutine bounded in time,
  cancelled (so that it cleans up) on SIGTERM, with its failures as BenchError.
- statistics, machine description, JSON output and table formatting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import asyncpg

from pts.bench.client import BenchError
from pts.database import database_name, with_database
from pts.errors import PTSError
from pts.flush import FlushPolicy
from pts.resources import sql_dir
from pts.settings import Settings
from pts.store.migrations import migrate
from pts.store.queries import parse_queries
from pts.testing.process import (
    HOST,
    STARTUP_GUARD,
    ServerFailed,
    free_port,
    output_of,
    spawn,
    stop_process,
    wait_healthy,
)

logger = logging.getLogger("pts.bench")

Progress: TypeAlias = Callable[[str], None]
T = TypeVar("T")


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
        *("-m", "uvicorn", app_factory, "--factory", "--host", HOST, "--port", str(port)),
        *("--lifespan", "on", "--log-level", "warning", "--no-access-log"),
        *("--backlog", str(backlog), "--timeout-graceful-shutdown", "5"),
    ]
    async with _serving(command, port, {**(env or {}), "PTS_DATABASE_URL": url}):
        yield port


@contextlib.asynccontextmanager
async def pts_serve(url: str, workers: int = 1, keep_alive: int = 60) -> AsyncIterator[int]:
    """``pts serve --no-auth --workers N --dsn url`` in a subprocess; yields its port.

    As a user starts it (its CLI, its access rules, its worker processes), on
    127.0.0.1, log level warning; idle keep-alive connections live ``keep_alive``
    seconds (not 5), as a measurement may wait for Postgres's statistics to
    settle between its appends and reading them back. Always terminated on
    exit, workers included.
    """
    port = free_port()
    command = [
        *("-m", "pts.cli", "serve", "--no-auth", "--host", HOST, "--port", str(port)),
        *("--workers", str(workers), "--dsn", url, "--log-level", "warning"),
        *("--timeout-keep-alive", str(keep_alive)),
    ]
    # A hang guard: the CLI, then each worker, imports and starts on a loaded machine.
    async with _serving(command, port, {}, guard=STARTUP_GUARD * (2 + workers)):
        yield port


@contextlib.asynccontextmanager
async def _serving(
    arguments: Sequence[str], port: int, env: Mapping[str, str], guard: float = STARTUP_GUARD
) -> AsyncIterator[None]:
    with tempfile.TemporaryFile() as log:
        process = spawn([sys.executable, *arguments], log, env=env)
        try:
            try:
                await wait_healthy(process, port, log, guard=guard)
            except ServerFailed as exc:
                raise BenchError(f"the bench server failed: {exc}") from None
            yield
        finally:
            stop_process(process)
            if process.returncode not in (0, -signal.SIGTERM, None):
                logger.warning("bench server exited %s:\n%s", process.returncode, output_of(log))


# -- the bench's own queries ------------------------------------------------------------------


@functools.cache
def bench_queries() -> dict[str, str]:
    """The named queries of ``sql/bench.sql``: what the benchmarks ask Postgres themselves
    (filling tables, counting rows and commits), beside what they measure through pts."""
    return parse_queries((sql_dir() / "bench.sql").read_text(encoding="utf-8"))


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


def latency_table(timings: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The TTFB/TTLB table (median, p90) of labelled timings, each with ``ttfb_ms``/``ttlb_ms``."""
    rows = [
        [
            label,
            ms(t["ttfb_ms"]["median"]),
            ms(t["ttfb_ms"]["p90"]),
            ms(t["ttlb_ms"]["median"]),
            ms(t["ttlb_ms"]["p90"]),
        ]
        for label, t in timings
    ]
    return table(["", "TTFB median", "TTFB p90", "TTLB median", "TTLB p90"], rows)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a plain table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        cells = [row[0].ljust(widths[0]), *rest]
        lines.append("  " + "   ".join(cells).rstrip())
    return lines

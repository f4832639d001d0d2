"""``pts bench protocol``: the Durable Streams protocol over real HTTP, pts vs the reference.

The same client measures, in one run on one machine, ``pts serve`` (its
``/v1/stream`` routes) and the protocol's reference server,
``@durable-streams/server`` on Node.js: either the server at
``reference_url`` (any Durable Streams server, measured as it runs), or one
started, in a pts checkout, by the checkout's launcher
(``python tests/reference_server.py``) as its authors start it in their tests:
``new DurableStreamTestServer({port, host: "127.0.0.1"}).start()`` (its
default store keeps streams in memory; ``reference_store="file"`` adds its
file-backed store, which fdatasyncs every append).

**Servers.** pts: ``pts serve --no-auth`` (one worker; with
``pts_workers="2"`` or ``"both"`` also ``--workers 2``, each its own server),
in a subprocess, on a fresh ``pts_bench_<random>`` database each (dropped at
the end), so every append goes to Postgres. The reference: the launcher in a
subprocess (it becomes ``node tests/reference_server.mjs``). Both bind 127.0.0.1 on free ports and
are always terminated.

**Client.** This process, one asyncio event loop, the minimal HTTP/1.1 client
of :mod:`pts.bench.client` on persistent (keep-alive) connections, one per
concurrent client, as a real client reuses its connection: a TCP connect per
append would measure the kernel, not the servers. Streams are
``text/plain``; every append body is ``payload`` (100) bytes.

**Measurements** (:mod:`pts.bench.protocol_load`), each one per server in
turn (pts first), on its own streams:

- *sequential appends*: one connection, ``warmup`` unmeasured ``POST``s, then
  ``appends`` measured ones, each awaited before the next; latency = from the
  request's write to its whole response (204) read. The protocol project's
  criteria: p50 <= 20 ms, p99 <= 100 ms.
- *throughput*: ``concurrency`` connections, each appending ``concurrent_appends``
  times to its own stream (one warm-up append each first), all released at
  once; ops/s = appends / (last response - release). Criterion: >= 1,000 ops/s.
  On pts also *Postgres per append*: the database's committed transactions
  (``pg_stat_database.xact_commit``) and the NOTIFYs on ``pts_v1``/``pts_v2``
  (and the stream changes they carry) between two readings around the
  measured appends, each taken after 10.5 s of quiet (the statistics lag).
- *catch-up read*: a stream filled with ``catchup_bytes`` in appends of
  ``catchup_chunk`` bytes, then read ``catchup_reads`` times from
  ``offset=-1``, following ``Stream-Next-Offset`` until
  ``Stream-Up-To-Date: true``; MB/s (10^6 bytes) of each whole read.
- *SSE*: **connect -> first control event**: ``sse_connects`` times, a fresh
  connection's ``GET ?offset=now&live=sse``, from before the TCP connect to
  the arrival of its first ``event: control``. **First-event latency**
  (append -> data event): one SSE reader already connected at the tail
  (``offset=now``, its first control event received) while another connection
  appends ``sse_events`` times, each after the previous one arrived; latency =
  from the append request's write to the arrival, at the reader, of the data
  event that completes that append's bytes (the first 3 are warm-up).

**Checks** (a failure is a BenchError, not a figure): every response has the
expected status, and every stream read back (catch-up, SSE, and a read after
the appends) holds exactly the bytes appended, in order.

Everything is bounded in count and time. Nothing here is a test: no figure is
asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from pts.bench.client import BenchError
from pts.bench.common import (
    Progress,
    bench_database,
    machine,
    pts_serve,
    raise_open_files_limit,
    run_benchmark,
    server_info,
)
from pts.bench.config import ProtocolConfig
from pts.bench.probes import PostgresCounts, counting
from pts.bench.protocol_load import MEASUREMENTS, Peer, throughput
from pts.bench.protocol_report import LABELS, ROWS, speedup
from pts.testing.process import HOST, STARTUP_GUARD, output_of, spawn, stop_process

__all__ = ["LAUNCHER", "REFERENCE_PACKAGE", "ProtocolConfig", "run_protocol"]

PTS_APP = "pts.http.fast_path:create_served_app"
REFERENCE_PACKAGE = "@durable-streams/server"
LAUNCHER = Path(__file__).resolve().parents[2] / "tests" / "reference_server.py"
"""The checkout's reference-server launcher (absent from an installed package)."""

# The protocol project's own criteria (reported, never asserted).
TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
TARGET_OPS = 1000.0

CLIENT = (
    "this process: one asyncio event loop, a minimal HTTP/1.1 client on keep-alive "
    "connections (one per concurrent client), the same for every server"
)


# -- the reference server ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def reference_server(
    reference_dir: str | None, data_dir: str | None
) -> AsyncIterator[tuple[Peer, dict[str, Any]]]:
    """The checkout's launcher in a subprocess; yields its server and what it printed.

    Raises BenchError outside a checkout, or if the server does not start
    (without Node.js or the package, with the launcher's word on installing
    them). Always terminated on exit: SIGTERM, then SIGKILL, then its process group.
    """
    # Both files: a stray top-level "tests" package beside an installed pts is no checkout.
    if not (LAUNCHER.is_file() and LAUNCHER.with_suffix(".mjs").is_file()):
        raise BenchError(
            f"starting the reference server needs a pts checkout ({LAUNCHER} is missing): "
            "pass --reference-url URL (a running Durable Streams server, e.g. "
            "`python -m tests.reference_server` in a checkout), or --servers pts to measure "
            "pts alone"
        )
    command = [sys.executable, str(LAUNCHER)]
    if reference_dir is not None:
        command += ["--packages-dir", reference_dir]
    if data_dir is not None:
        command += ["--data-dir", data_dir]
    with tempfile.TemporaryFile() as log:
        process = spawn(command, log)
        try:
            info = await _wait_started(process, log)
            yield Peer.at(info["url"]), info
        finally:
            stop_process(process)


async def _wait_started(process: subprocess.Popen[bytes], log: IO[bytes]) -> dict[str, Any]:
    """The JSON line the launcher prints once its server listens."""
    deadline = time.monotonic() + STARTUP_GUARD
    while True:
        if process.poll() is not None:
            raise BenchError(
                f"the reference server exited with code {process.returncode}:\n{output_of(log)}"
            )
        for line in output_of(log).splitlines():
            if line.startswith("{"):
                info: dict[str, Any] = json.loads(line)
                return info
        if time.monotonic() > deadline:
            raise BenchError(
                f"the reference server did not start within {STARTUP_GUARD:g} s:\n{output_of(log)}"
            )
        await asyncio.sleep(0.05)


# -- the run ----------------------------------------------------------------------------------


def run_protocol(config: ProtocolConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; return every figure (what ``--json`` writes).

    Raises BenchError if it cannot run (no reference server: outside a
    checkout without ``reference_url``, or no Node.js or reference package;
    no database), a server answers unexpectedly or loses bytes,
    ``config.timeout`` passes or SIGTERM arrives; every server process is
    stopped and the bench database dropped in every case.
    """
    say = progress or (lambda _message: None)
    return run_benchmark(lambda: _run(config, say), config.timeout)


async def _run(config: ProtocolConfig, progress: Progress) -> dict[str, Any]:
    started = time.monotonic()
    targets = config.targets
    raise_open_files_limit()
    run_id = secrets.token_hex(4)
    peers: dict[str, Peer] = {}
    servers: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {t: {} for t in targets}
    async with asyncio.timeout(config.timeout), contextlib.AsyncExitStack() as stack:
        # The reference first: without Node.js or its package this fails at once.
        for target in targets:
            if target == "reference-url":
                assert config.reference_url is not None
                peers[target] = Peer.at(config.reference_url)
                servers[target] = {"url": config.reference_url, "started_as": "--reference-url"}
            elif target.startswith("reference"):
                data_dir = None
                if target == "reference-file":
                    data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pts-ref-"))
                progress(f"starting the reference server ({LABELS[target]}) with {LAUNCHER.name}")
                peer, info = await stack.enter_async_context(
                    reference_server(config.reference_dir, data_dir)
                )
                peers[target] = peer
                servers[target] = {
                    "package": f"{REFERENCE_PACKAGE} {info.get('version')}",
                    "node": info.get("node"),
                    "store": info.get("store"),
                    "started_as": "new DurableStreamTestServer({port, host: '127.0.0.1'"
                    + (", dataDir" if data_dir else "")
                    + "}).start()",
                }
        counts: dict[str, PostgresCounts] = {}
        for target in (t for t in targets if t.startswith("pts")):
            assert config.dsn is not None  # checked by ProtocolConfig
            workers = 2 if target == "pts-2" else 1
            db = await stack.enter_async_context(bench_database(config.dsn, progress))
            progress(f"starting pts serve --no-auth --workers {workers} on {db.info['database']}")
            port = await stack.enter_async_context(pts_serve(db.url, workers))
            counts[target] = await stack.enter_async_context(
                counting(config.dsn, db.url, db.info["database"])
            )
            peers[target] = Peer(HOST, port)
            servers[target] = {
                **server_info(PTS_APP),
                "runner": f"pts serve --no-auth --workers {workers} in a subprocess",
                "workers": workers,
                "access_control": "none (PTS_NO_AUTH=1, as pts serve --no-auth)",
                "database": {**db.info, "fresh": db.fresh},
            }
        for kind, measure in MEASUREMENTS:
            for target in targets:
                progress(f"{kind}: {LABELS[target]}")
                name = f"b{run_id}"
                if kind == "throughput" and target in counts:
                    # Also the database's transactions and NOTIFYs (~20 s of quiet around it).
                    figures = await throughput(config, peers[target], name, counts[target])
                else:
                    figures = await measure(config, peers[target], name)
                results[target][kind] = figures
    servers = {target: servers[target] for target in targets}
    return _results(config, servers, results, time.monotonic() - started)


def _results(
    config: ProtocolConfig,
    servers: dict[str, dict[str, Any]],
    results: dict[str, dict[str, Any]],
    elapsed: float,
) -> dict[str, Any]:
    criteria: dict[str, dict[str, bool]] = {}
    for target, figures in results.items():
        latency = figures["sequential"]["latency_ms"]
        criteria[target] = {
            "p50_met": latency["p50"] <= TARGET_P50_MS,
            "p99_met": latency["p99"] <= TARGET_P99_MS,
            "throughput_met": figures["throughput"]["ops_per_s"] >= TARGET_OPS,
        }
    comparison: dict[str, dict[str, float]] = {}
    mine = next((t for t in results if t.startswith("pts")), None)
    if mine is not None:
        for target in results:
            if not target.startswith("pts"):
                comparison[target] = {
                    key: speedup(results[mine], results[target], key) for key, *_ in ROWS
                }
    return {
        "benchmark": "protocol",
        "machine": machine(),
        "parameters": config.parameters(),
        "servers": servers,
        "client": CLIENT,
        "method": {
            "sequential": "one keep-alive connection; latency = request write -> whole "
            "response read, each append awaited before the next",
            "throughput": f"{config.concurrency} keep-alive connections, one stream each, "
            "released at once; ops/s = appends / (last response - release)",
            "catchup": "GET ?offset=-1 then each Stream-Next-Offset until Stream-Up-To-Date: "
            "true, on one keep-alive connection; MB = 10^6 bytes",
            "sse_first_event": "a reader connected at the tail (offset=now, first control "
            "event received); latency = the append request's write -> arrival at the reader "
            "of the data event completing that append's bytes",
            "postgres": "pg_stat_database.xact_commit delta of the server's database and the "
            "NOTIFYs on pts_v1/pts_v2 received by a LISTEN connection, around the measured "
            "appends (each reading after 10.5 s of quiet), divided by the appends",
            "sse_connect": "new connection; latency = before the TCP connect -> arrival of "
            "the first control event (offset=now on a stream at its tail)",
        },
        "criteria": {
            "source": "the Durable Streams project's own performance criteria",
            "append_p50_ms_max": TARGET_P50_MS,
            "append_p99_ms_max": TARGET_P99_MS,
            "throughput_ops_min": TARGET_OPS,
            "met": criteria,
        },
        "results": results,
        "pts_speedup": comparison,
        "elapsed_s": elapsed,
    }

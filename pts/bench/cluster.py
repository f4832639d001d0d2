"""``pts bench cluster --nodes N``: N pts processes on one Postgres, through a rolling deploy.

N nodes (:mod:`pts.bench.cluster_node`, loopback ports) share a fresh bench
database; this one load process drives answers on every node and watches each
over SSE from the other nodes, reconnecting with ``Last-Event-ID`` to another
live node whenever its node lets it go. Three phases, each with new answers:

- ``steady``: every node up;
- ``sigterm``: node 1 is sent SIGTERM mid-answer (a rolling deploy: it drains,
  exits and is started again);
- ``sigkill``: node 2 is killed mid-answer (SIGKILL: its answers must end
  ``timeout`` within ``stale_after`` plus a sweep, their persisted text kept).

Per phase: delivery delay (commit, heard on this process's own LISTEN, to the
subscriber's event) p50/p99, missing and duplicated bytes per subscriber
against the persisted body, answers lost, the nodes' Postgres connections and
the notifications per second the database sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from pts.bench.client import BenchError, HttpConnection, SseParser, http_json
from pts.bench.cluster_config import ClusterConfig
from pts.bench.common import (
    Progress,
    bench_database,
    machine,
    percentiles,
    run_benchmark,
)
from pts.bench.config import stream_tokens
from pts.bench.probes import CommitClock, Samples, listening, sample_connections
from pts.database import database_name
from pts.store import SQLStore, create_store
from pts.testing.process import free_port, spawn, stop_process, wait_healthy

__all__ = ["run_cluster"]

LOAD_NAME = "pts-bench-load"
"""The ``application_name`` of this process's own connections (not counted as the nodes')."""
FINAL = ("done", "error", "timeout", "aborted")
RECONNECT_PAUSE = 0.05
"""Seconds a subscriber waits before it reconnects (an EventSource waits ``retry``)."""
PHASES = ("steady", "sigterm", "sigkill")


@dataclass(slots=True)
class Node:
    """One pts process."""

    index: int
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    made: int = 0
    """Answers created in this process (the fan-out app numbers its streams from 0)."""
    alive: bool = True


@dataclass(slots=True)
class Watch:
    """One SSE subscriber of one answer: what it received, where, and how it ended."""

    stream_id: uuid.UUID
    avoid: int
    """The node driving the answer: the subscriber watches from the others."""
    spread: int = 0
    """Which of its answer's subscribers this is: they start on different nodes."""
    ranges: list[tuple[int, int, bytes, float]] = field(default_factory=list)
    final: str | None = None
    final_at: float = 0.0
    connections: int = 0
    attached: asyncio.Event = field(default_factory=asyncio.Event)


def _with_app_name(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={LOAD_NAME}"


async def _start_node(url: str, index: int, config: ClusterConfig) -> Node:
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the node (_stop_nodes)
    command = [sys.executable, "-m", "pts.bench.cluster_node", str(port), str(config.stale_after)]
    process = spawn(command, log, env={"PTS_DATABASE_URL": url})
    await wait_healthy(process, port, log)
    return Node(index, port, process, log)


async def _watch(watch: Watch, nodes: list[Node], deadline: float) -> None:
    """Follow one answer to its final status, from any live node but its driver's."""
    turn = watch.avoid + watch.spread
    while watch.final is None and time.monotonic() < deadline:
        candidates = [n for n in nodes if n.alive and n.index != watch.avoid]
        turn += 1
        if candidates:
            # A node that goes away mid-response: reconnect elsewhere, from the last event.
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, BenchError):
                await _follow(watch, candidates[turn % len(candidates)])
        if watch.final is None:
            await asyncio.sleep(RECONNECT_PAUSE)


def _received(watch: Watch) -> int:
    """The offset after the last complete text event: where a reconnect resumes."""
    return watch.ranges[-1][1] if watch.ranges else 0


async def _follow(watch: Watch, node: Node) -> None:
    headers = {"Accept": "text/event-stream"}
    if watch.ranges:
        headers["Last-Event-ID"] = str(_received(watch))
    async with (
        HttpConnection(node.port) as conn,
        conn.stream("GET", f"/streams/{watch.stream_id}/events", headers) as (status, _h, body),
    ):
        if status != 200:
            raise BenchError(f"GET /streams/{watch.stream_id}/events answered {status}")
        watch.connections += 1
        parser = SseParser(keep_space=False)
        async for piece in body:
            now = time.monotonic()
            for (name, data), event_id in zip(parser.feed(piece), parser.ids, strict=True):
                if name == "text" and event_id is not None:
                    watch.ranges.append((_received(watch), int(event_id), data, now))
                elif name == "status":
                    watch.attached.set()
                    status_word = json.loads(data)["status"]
                    if status_word in FINAL:
                        watch.final, watch.final_at = status_word, now
                        return


def _coverage(watch: Watch, body: bytes) -> tuple[int, int, bool]:
    """(missing, duplicated) bytes of ``body`` and whether what arrived matches it."""
    seen = bytearray(len(body))
    text = bytearray(body)
    duplicated, exact = 0, True
    for start, end, data, _at in watch.ranges:
        if end > len(body) or end - start != len(data):
            exact = False
            continue
        for i in range(start, end):
            duplicated += seen[i] > 0
            seen[i] = 1
        exact = exact and text[start:end] == data
    return seen.count(0), duplicated, exact


def _delays(watch: Watch, clock: CommitClock) -> list[float]:
    committed = dict(clock.flushes(watch.stream_id))
    return [at - committed[end] for _s, end, _d, at in watch.ranges if end in committed]


async def _body(store: SQLStore, stream_id: uuid.UUID) -> tuple[str, bytes]:
    body = bytearray()
    while True:
        page = await store.read(stream_id, len(body))
        body += page.data
        if page.up_to_date or not page.data:
            return str(page.status), bytes(body)


async def _phase(
    name: str,
    nodes: list[Node],
    ctx: dict[str, Any],
    config: ClusterConfig,
    progress: Progress,
) -> dict[str, Any]:
    clock: CommitClock = ctx["clock"]
    t0 = time.monotonic()
    notified0 = ctx["notified"][0]
    answers: dict[uuid.UUID, tuple[Node, bytes]] = {}
    for node in [n for n in nodes if n.alive]:
        created = await http_json(
            node.port, "POST", f"/bench/streams?count={config.streams_per_node}"
        )
        for sid in created["ids"]:
            tokens = stream_tokens(node.made, config.sentences, config.tokens_per_sentence)
            answers[uuid.UUID(sid)] = (node, "".join(tokens).encode())
            node.made += 1
    clock.track(list(answers))
    deadline = t0 + config.production_s * 3 + config.stale_after * 3 + 60
    watches = [
        Watch(sid, node.index)
        for sid, (node, _) in answers.items()
        for _ in range(config.subscribers_per_stream)
    ]
    tasks = [asyncio.create_task(_watch(w, nodes, deadline)) for w in watches]
    try:
        async with asyncio.timeout(60):
            for w in watches:
                await w.attached.wait()
        query = (
            f"sentences={config.sentences}&tokens_per_sentence={config.tokens_per_sentence}"
            f"&pace={config.pace!r}&seed={config.seed}"
        )
        for node in [n for n in nodes if n.alive]:
            await http_json(node.port, "POST", f"/bench/produce?{query}")
        acted_at, victim = await _act(name, nodes, answers, ctx, config, progress)
        await asyncio.wait_for(asyncio.gather(*tasks), max(1.0, deadline - time.monotonic()))
    except TimeoutError:
        open_ = sum(1 for w in watches if w.final is None)
        raise BenchError(
            f"phase {name}: {open_} subscriber(s) never saw their answer end"
        ) from None
    finally:
        for task in tasks:
            task.cancel()
    t1 = time.monotonic()
    return await _judge(name, answers, watches, victim, acted_at, (t0, t1, notified0), ctx)


async def _act(
    name: str,
    nodes: list[Node],
    answers: dict[uuid.UUID, tuple[Node, bytes]],
    ctx: dict[str, Any],
    config: ClusterConfig,
    progress: Progress,
) -> tuple[float, Node | None]:
    """The phase's event: nothing, a SIGTERM (then a restart) or a SIGKILL, mid-answer."""
    if name == "steady":
        return 0.0, None
    victim = nodes[1] if name == "sigterm" else nodes[2]
    clock: CommitClock = ctx["clock"]
    own = [sid for sid, (node, _) in answers.items() if node is victim]
    async with asyncio.timeout(60):  # mid-answer: once each of its answers has text
        while not all(clock.flushes(sid) for sid in own):
            await asyncio.sleep(0.01)
    victim.alive = False
    acted_at = time.monotonic()
    if name == "sigkill":
        victim.process.send_signal(signal.SIGKILL)
        progress(f"  sigkill: node {victim.index} killed mid-answer")
        return acted_at, victim
    victim.process.send_signal(signal.SIGTERM)
    progress(f"  sigterm: node {victim.index} draining")
    code = await asyncio.to_thread(victim.process.wait, config.production_s * 3 + 150)
    if code != 0:
        raise BenchError(f"node {victim.index} exited {code} after SIGTERM")
    fresh = await _start_node(ctx["url"], victim.index, config)
    nodes[victim.index] = fresh
    progress(f"  sigterm: node {victim.index} exited 0 and was started again")
    return acted_at, victim


async def _judge(
    name: str,
    answers: dict[uuid.UUID, tuple[Node, bytes]],
    watches: list[Watch],
    victim: Node | None,
    acted_at: float,
    window: tuple[float, float, int],
    ctx: dict[str, Any],
) -> dict[str, Any]:
    store: SQLStore = ctx["store"]
    t0, t1, notified0 = window
    finals = {sid: await _body(store, sid) for sid in answers}
    missing = duplicated = inexact = 0
    delays: list[float] = []
    for w in watches:
        m, d, exact = _coverage(w, finals[w.stream_id][1])
        missing, duplicated, inexact = missing + m, duplicated + d, inexact + (not exact)
        delays += _delays(w, ctx["clock"])
    killed = name == "sigkill" and victim is not None
    lost = sum(
        1
        for sid, (node, expected) in answers.items()
        if not (killed and node is victim) and finals[sid] != ("done", expected)
    )
    victims = [sid for sid, (node, _) in answers.items() if killed and node is victim]
    timed_out = [w.final_at - acted_at for w in watches if w.stream_id in victims]
    samples: Samples = ctx["samples"]
    connections = [open_ for _t, open_, _a in samples.connections_between(t0, t1)]
    return {
        "phase": name,
        "answers": len(answers),
        "subscribers": len(watches),
        "delay_ms": percentiles([d * 1000 for d in delays], (50, 99)),
        "missing_bytes": missing,
        "duplicated_bytes": duplicated,
        "inexact_subscribers": inexact,
        "answers_lost": lost,
        "killed_answers": len(victims),
        "killed_timeout": sum(1 for sid in victims if finals[sid][0] == "timeout"),
        "killed_text_kept": sum(1 for sid in victims if finals[sid][1]),
        "killed_timeout_after_s": max(timed_out, default=None),
        "reconnects": sum(w.connections - 1 for w in watches),
        "connections_max": max(connections, default=0),
        "notifications_per_s": (ctx["notified"][0] - notified0) / max(t1 - t0, 1e-9),
        "seconds": t1 - t0,
    }


async def _cluster(config: ClusterConfig, progress: Progress) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(bench_database(config.dsn, progress))
        load_url = _with_app_name(db.url)
        clock = CommitClock()
        notified = [0]

        def count(*_args: object) -> None:
            notified[0] += 1

        conn = await stack.enter_async_context(listening(load_url, clock))
        for channel in ("pts_v1", "pts_v2"):
            await conn.add_listener(channel, count)
        store = create_store(load_url, min_size=1, max_size=2)
        await store.open()
        stack.push_async_callback(store.close)
        samples = Samples()
        sampler_conn = await stack.enter_async_context(listening(load_url, CommitClock()))
        sampler = asyncio.create_task(
            sample_connections(sampler_conn, database_name(db.url), LOAD_NAME, samples)
        )
        stack.callback(sampler.cancel)
        progress(f"starting {config.nodes} nodes")
        nodes = [await _start_node(db.url, i, config) for i in range(config.nodes)]
        stack.callback(_stop_nodes, nodes)
        ctx = {"clock": clock, "store": store, "samples": samples, "notified": notified}
        ctx["url"] = db.url
        phases = []
        for name in PHASES:
            progress(f"phase {name}")
            phases.append(await _phase(name, nodes, ctx, config, progress))
        return {
            "benchmark": "cluster",
            "parameters": config.parameters(),
            "machine": machine(),
            "database": db.info,
            "phases": phases,
        }


def _stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:
        stop_process(node.process)
        node.log.close()


def run_cluster(config: ClusterConfig, progress: Progress) -> dict[str, Any]:
    """Run ``pts bench cluster`` (see the module's documentation); every figure."""

    async def bounded() -> dict[str, Any]:
        try:
            async with asyncio.timeout(config.timeout):
                return await _cluster(config, progress)
        except TimeoutError:
            raise BenchError(f"the cluster run took longer than {config.timeout:g} s") from None

    return run_benchmark(bounded, config.timeout)

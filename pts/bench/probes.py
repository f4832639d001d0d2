"""What the load side measures beside the servers: commits, connections, its own loop, the machine.

- :class:`CommitClock`: the load process's own LISTEN on pts's channel: when
  each committed change of each tracked stream arrived (every claim, append
  and final status sends one NOTIFY ``{"id", "size", "status", "closed"}``).
- :func:`listening`: that LISTEN connection.
- :class:`Samples`, :func:`sample_connections`, :func:`probe_lag`: a server's
  connections to its database (``pg_stat_activity``, by ``bench_server_connections``
  of ``sql/bench.sql``, as no store call counts another process's connections)
  and the load loop's lag, over time.
- :class:`PostgresCounts`, :func:`counting`: the transactions a database
  committed (``pg_stat_database``) and the NOTIFYs on pts's channels over a
  phase of load, for transactions and NOTIFYs per append.
- :func:`machine_cpu`, :func:`port_range`: from ``/proc`` (Linux; None elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from pts.bench.client import BenchError
from pts.bench.common import bench_queries

CHANNEL = "pts_v1"
"""The channel pts NOTIFYs a committed change of a stream on (its wire format, v1)."""
BATCH_CHANNEL = "pts_v2"
"""The channel of a group-committed batch: a JSON array of v1 objects, one per stream."""
SAMPLE_INTERVAL = 0.1
"""How often pg_stat_activity is sampled (seconds)."""
LAG_PROBE = 0.005
"""How often the load loop's lag is probed (seconds)."""
CHANNELS = ("pts_v1", "pts_v2")
"""pts's notification channels: one change per NOTIFY (v1), a JSON array of changes (v2)."""
STATS_SETTLE = 10.5
"""Seconds a database must be quiet before its ``pg_stat_database`` counts are whole: a
backend reports when it goes idle, at most once a second, else within 10 s."""


@dataclass(frozen=True, slots=True)
class Note:
    """One notification of a tracked stream, as it arrived."""

    at: float
    size: int
    status: str
    closed: bool


class CommitClock:
    """Every notification of each tracked stream, timed on ``clock`` at its arrival."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.notes: dict[uuid.UUID, list[Note]] = {}
        self._closed: dict[uuid.UUID, asyncio.Event] = {}

    def track(self, ids: Sequence[uuid.UUID]) -> None:
        """Record these streams' notifications from now on."""
        for stream_id in ids:
            self.notes[stream_id] = []
            self._closed[stream_id] = asyncio.Event()

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        """The asyncpg listener callback."""
        now = self.clock()
        data = json.loads(str(payload))
        for note in data if isinstance(data, list) else [data]:
            self._record(now, note)

    def _record(self, now: float, note: dict[str, Any]) -> None:
        notes = self.notes.get(uuid.UUID(note["id"]))
        if notes is None:
            return
        notes.append(Note(now, int(note["size"]), str(note["status"]), bool(note["closed"])))
        if notes[-1].closed:
            self._closed[uuid.UUID(note["id"])].set()

    def closed(self, stream_id: uuid.UUID) -> Note | None:
        """The stream's final notification (None while it is open)."""
        notes = self.notes[stream_id]
        return notes[-1] if notes and notes[-1].closed else None

    def flushes(self, stream_id: uuid.UUID) -> list[tuple[int, float]]:
        """``(size, arrival)`` of each notification that grew the stream, in order."""
        out: list[tuple[int, float]] = []
        for note in self.notes[stream_id]:
            if note.size > (out[-1][0] if out else 0):
                out.append((note.size, note.at))
        return out

    async def wait_closed(self, ids: Sequence[uuid.UUID], guard: float | None = None) -> None:
        """Wait until every stream in ``ids`` has finished; BenchError after ``guard`` s."""
        try:
            async with asyncio.timeout(guard):
                for stream_id in ids:
                    await self._closed[stream_id].wait()
        except TimeoutError:
            open_ = sum(1 for s in ids if not self._closed[s].is_set())
            raise BenchError(f"{open_} stream(s) did not finish within {guard:g} s") from None


@contextlib.asynccontextmanager
async def listening(url: str, clock: CommitClock) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection of this process LISTENing for ``clock``; closed on exit."""
    conn = await asyncpg.connect(url, timeout=15)
    try:
        await conn.add_listener(CHANNEL, clock.on_notify)
        await conn.add_listener(BATCH_CHANNEL, clock.on_notify)
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=5)


@dataclass(slots=True)
class PostgresCounts:
    """What one database committed and notified: read :meth:`settled` before and after a phase.

    The transactions are the database's ``xact_commit`` (read on an admin
    connection to another database, so the reads count nowhere) and the
    cluster's transaction ids assigned (the transactions that wrote); every
    transaction of the database counts, the server's background upkeep too (a
    sweep every few seconds), a small share of a phase of thousands of appends.
    """

    admin: asyncpg.Connection[Any]
    database: str
    notifies: int = 0
    changes: int = 0
    """Stream changes the NOTIFYs carried (one per v1 payload, the array's length in v2)."""

    def on_notify(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        """The asyncpg listener callback, for both channels."""
        self.notifies += 1
        if channel == "pts_v2":
            changes = json.loads(str(payload))
            self.changes += len(changes) if isinstance(changes, list) else 1
        else:
            self.changes += 1

    async def settled(self) -> tuple[int, int, int, int]:
        """``(transactions, next xid, notifies, changes)`` after STATS_SETTLE quiet seconds."""
        await asyncio.sleep(STATS_SETTLE)
        queries = bench_queries()
        value = await self.admin.fetchval(queries["bench_xact_commit"], self.database)
        xid = await self.admin.fetchval(queries["bench_next_xid"])
        return int(value or 0), int(xid), self.notifies, self.changes

    @staticmethod
    def per_append(
        before: tuple[int, int, int, int], after: tuple[int, int, int, int], appends: int
    ) -> dict[str, Any]:
        """The deltas between two :meth:`settled` readings, and each per append.

        ``transactions`` counts every commit in the database, read-only ones
        too (lookups, the pool's reset of a released connection);
        ``writing_transactions`` those that were given a transaction id, which
        is to say wrote something, in the whole cluster (other databases' too).
        """
        transactions, xids, notifies, changes = (b - a for a, b in zip(before, after, strict=True))
        return {
            "appends": appends,
            "transactions": transactions,
            "writing_transactions": xids,
            "transactions_per_append": transactions / appends,
            "writing_transactions_per_append": xids / appends,
            "notifies": notifies,
            "stream_changes": changes,
            "notifies_per_append": notifies / appends,
            "changes_per_notify": changes / notifies if notifies else 0.0,
        }


@contextlib.asynccontextmanager
async def counting(admin_dsn: str, url: str, database: str) -> AsyncIterator[PostgresCounts]:
    """:class:`PostgresCounts` of ``database`` (at ``url``), LISTENing on both channels."""
    admin = await asyncpg.connect(admin_dsn, timeout=15)
    try:
        counts = PostgresCounts(admin, database)
        listener = await asyncpg.connect(url, timeout=15)
        try:
            for channel in CHANNELS:
                await listener.add_listener(channel, counts.on_notify)
            yield counts
        finally:
            with contextlib.suppress(Exception):
                await listener.close(timeout=5)
    finally:
        with contextlib.suppress(Exception):
            await admin.close(timeout=5)


@dataclass(slots=True)
class Samples:
    """Server connections (pg_stat_activity) and the load loop's lag, over time."""

    connections: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, open, active) of the server's connections to the bench database."""
    lag: list[tuple[float, float]] = field(default_factory=list)
    """(time, seconds a callback scheduled then waited for the load loop)."""

    def connections_between(self, start: float, end: float) -> list[tuple[float, int, int]]:
        return [s for s in self.connections if start <= s[0] <= end]

    def lag_between(self, start: float, end: float) -> list[float]:
        return [lag for t, lag in self.lag if start <= t <= end]


async def sample_connections(
    conn: asyncpg.Connection[Any], database: str, exclude: str, samples: Samples
) -> None:
    """Every SAMPLE_INTERVAL: the client connections to ``database`` but those whose
    ``application_name`` is ``exclude``."""
    query = bench_queries()["bench_server_connections"]
    while True:
        row = await conn.fetchrow(query, database, exclude)
        assert row is not None
        samples.connections.append((time.monotonic(), int(row["open"]), int(row["active"])))
        await asyncio.sleep(SAMPLE_INTERVAL)


async def probe_lag(samples: Samples) -> None:
    """Every LAG_PROBE seconds: how long a callback scheduled now waits for the loop."""
    loop = asyncio.get_running_loop()

    def ran(scheduled: float) -> None:
        samples.lag.append((scheduled, time.monotonic() - scheduled))

    while True:
        await asyncio.sleep(LAG_PROBE)
        loop.call_soon(ran, time.monotonic())


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def port_range() -> int | None:
    """How many local ports outgoing connections may use."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            low, high = (int(v) for v in ports.read().split())
    except (OSError, ValueError):
        return None
    return high - low + 1

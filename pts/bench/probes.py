"""What the load side measures beside the servers: commits, connections, its own loop, the machine.

- :class:`CommitClock`: the load process's own LISTEN on pts's channel: when
  each committed change of each tracked stream arrived (every claim, append
  and final status sends one NOTIFY ``{"id", "size", "status", "closed"}``).
- :func:`listening`: that LISTEN connection.
- :class:`Samples`, :func:`sample_connections`, :func:`probe_lag`: a server's
  connections to its database (``pg_stat_activity``; the one query of its own
  the bench makes, as no store call counts another process's connections) and
  the load loop's lag, over time.
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

CHANNEL = "pts_v1"
"""The channel pts NOTIFYs a committed change of a stream on (its wire format, v1)."""
BATCH_CHANNEL = "pts_v2"
"""The channel of a group-committed batch: a JSON array of v1 objects, one per stream."""
SAMPLE_INTERVAL = 0.1
"""How often pg_stat_activity is sampled (seconds)."""
LAG_PROBE = 0.005
"""How often the load loop's lag is probed (seconds)."""


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
    query = (
        "SELECT count(*) AS open, count(*) FILTER (WHERE state = 'active') AS active "
        "FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' "
        "AND application_name IS DISTINCT FROM $2"
    )
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

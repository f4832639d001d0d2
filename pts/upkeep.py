"""``Upkeep``: the component's background work.

The heartbeat of the streams this process writes (liveness by heartbeat, not
by age), the sweeper that ends the streams whose driver died or that nobody
drove, the garbage collection of expired Durable Streams, the compaction of
finished streams' chunk rows, and whatever work a notification or a reconnect
sets off for this process's writers. Each loop
survives any failure (logged, throttled) and runs until :meth:`Upkeep.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Coroutine
from typing import Protocol, TypeVar

from pts.live.notification import Notification
from pts.logsafe import safe, warn_throttled
from pts.models import StreamStatus
from pts.stats import Counters
from pts.store.base import Store
from pts.tasks import raise_if_cancelling, stop_tasks
from pts.writing import WriterRegistry

__all__ = ["Upkeep", "UpkeepOwner"]

T = TypeVar("T")

COMPACT_BATCH = 10
"""Finished streams the sweeper compacts per transaction."""
COMPACT_BATCHES = 10
"""Batches per sweep at most: one sweep never works on compaction for long."""

logger = logging.getLogger("pts")  # the component's name for these lines, as before the move


class UpkeepOwner(Protocol):
    """What the background work reads of its component (a ``PersistentTextStreaming``)."""

    @property
    def store(self) -> Store: ...

    @property
    def writers(self) -> WriterRegistry: ...

    @property
    def heartbeat_interval(self) -> float: ...

    @property
    def sweep_interval(self) -> float: ...

    @property
    def stale_after(self) -> float: ...

    @property
    def pending_timeout(self) -> float | None: ...

    @property
    def counters(self) -> Counters: ...


class Upkeep:
    """The background tasks of one component: heartbeat, sweeper, and the work they spawn."""

    def __init__(self, owner: UpkeepOwner) -> None:
        self._owner = owner
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *, sweeper: bool) -> None:
        """Start the heartbeat, and the sweeper if ``sweeper``."""
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="pts-heartbeat"))
        if sweeper:
            self._tasks.append(asyncio.create_task(self._sweep_loop(), name="pts-sweeper"))

    def spawn(self, work: Coroutine[object, object, None]) -> None:
        """Run background work; keep a reference (forgetting finished tasks)."""
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(work))

    async def stop(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks, "the background work")

    def on_notification(self, note: Notification) -> None:
        """A stream finished (or was deleted), maybe elsewhere: its writer here stops."""
        if note.closed or note.status == "deleted":
            deleted = note.status == "deleted"
            status = StreamStatus.ABORTED if deleted else StreamStatus(note.status)
            self._owner.writers.closed_elsewhere(note.stream_id, status)

    def on_reconnect(self) -> None:
        """Notifications were lost while the listener was away: re-check our writers."""
        if self._owner.writers:
            self.spawn(self._check_writers())

    async def _check_writers(self) -> None:
        await self._owner.writers.check(self._owner.store)

    async def _heartbeat_loop(self) -> None:
        owner = self._owner
        while True:
            await asyncio.sleep(owner.heartbeat_interval)
            ids = owner.writers.ids()
            if not ids:
                continue
            alive = await _quietly(owner.store.heartbeat(ids), "heartbeat", owner.counters)
            if alive is None:
                continue
            # A writer whose stream is no longer streaming was finished
            # elsewhere and we missed the notification.
            for stream_id in ids:
                writer = owner.writers.get(stream_id)
                if stream_id not in alive and writer is not None and not writer.finished:
                    self.spawn(self._check_writers())
                    break

    async def _sweep_loop(self) -> None:
        owner = self._owner
        while True:
            # Jitter keeps the sweepers of many processes from running in step.
            await asyncio.sleep(owner.sweep_interval * random.uniform(0.8, 1.2))
            swept = await _quietly(
                owner.store.timeout_stale(owner.stale_after), "sweep", owner.counters
            )
            for info in swept or ():
                logger.warning("stream %s timed out: its driver stopped heartbeating", info.id)
            if owner.pending_timeout is not None:
                # Pending pts streams nobody drove: end them, so their readers end too.
                unclaimed = await _quietly(
                    owner.store.timeout_pending(owner.pending_timeout),
                    "pending timeout",
                    owner.counters,
                )
                for info in unclaimed or ():
                    logger.info("stream %s timed out: nobody drove it", info.id)
            # Expired and deleted streams no live fork needs (Durable Streams TTLs).
            await _quietly(owner.store.collect_garbage(), "garbage collection", owner.counters)
            await self._compact_finished()

    async def _compact_finished(self) -> None:
        """Merge finished streams' chunk rows (a catch-up then costs by bytes, not
        rows), a batch at a time, each its own short transaction; a backlog (after
        an upgrade, or a burst of finished streams) drains over a few sweeps."""
        store = self._owner.store
        for _ in range(COMPACT_BATCHES):
            done = await _quietly(
                store.compact_finished(COMPACT_BATCH), "compaction", self._owner.counters
            )
            if done is None or done < COMPACT_BATCH:
                return


async def _quietly(work: Awaitable[T], what: str, counters: Counters) -> T | None:
    """Run background ``work``; log (and count) a failure instead of killing the loop."""
    try:
        return await work
    except Exception as exc:  # noqa: BLE001 - a background loop must survive anything
        raise_if_cancelling()  # an error in place of a cancellation (a driver's cleanup)
        counters.database_errors += 1
        warn_throttled(logger, what, "%s failed: %s", what, safe(exc))
        return None

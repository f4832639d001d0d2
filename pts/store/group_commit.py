"""Group commit: appends that arrive while a commit is in flight share the next one.

Postgres serialises the commit of every transaction that sent a NOTIFY on one
global lock, so one transaction (and one NOTIFY) per append caps the append
rate. A :class:`GroupCommit` queue gathers the appends that arrive while a
batch is in flight and commits them together, in one statement: one
transaction, one round of notifications. There is no timer: when nothing is in
flight an append starts a batch at once (on the event loop's next turn, so the
appends that arrive in the same turn join it), and a lone append is a batch of
one, run by the single-item statement exactly as before group commit.

Every caller gets its own answer, and only after its own data committed: the
batch statement returns one result per item (a failing item fails alone). If
the whole statement raises anyway (a deadlock, a serialization failure, an
unexpected error), every item is applied again on its own, in order, so each
caller gets the answer or the exception it would have got alone. When the
database is unreachable (:class:`~pts.errors.StoreUnavailable`) every caller of
the batch gets that, as each would have on its own.

Items with the same ``key`` (a stream) are applied in arrival order: up to
``max_in_flight`` batches may be in flight at once, but an item whose key is in
one of them waits for the next batch (with every later item of that key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pts.errors import StoreUnavailable

__all__ = ["BatchStats", "GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH_ITEMS = 500
"""The most items one batch statement carries."""
MAX_BATCH_BYTES = 8 * 1024 * 1024
"""The most payload bytes one batch statement carries (a single larger item goes alone)."""


@dataclass(slots=True)
class BatchStats:
    """What a queue has done since it was made (for tests, the bench and metrics)."""

    items: int = 0
    """Items committed or answered (through a batch or alone)."""
    batches: int = 0
    """Statements run for batches of two or more items (each one transaction)."""
    singles: int = 0
    """Items run alone: a batch of one, or an item of a batch that failed as a whole."""
    fallbacks: int = 0
    """Batches that raised as a whole, so that their items were run alone."""
    sizes: list[int] = field(default_factory=list)
    """The size of each batch, in order (a batch of one counts as 1); the last 1000."""

    @property
    def transactions(self) -> int:
        """Statements (transactions) run: batches and single items."""
        return self.batches + self.singles


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    key: Hashable
    size: int
    future: asyncio.Future[R]


class GroupCommit(Generic[T, R]):
    """A queue that commits the items submitted together in one batch.

    ``run_batch(items)`` runs one statement for two or more items and returns one
    result per item, in order: the result, or the exception that item's caller
    gets. ``run_one(item)`` runs the single-item statement (a batch of one, and
    the fallback). ``key(item)`` names what must stay in order (the stream);
    ``size(item)`` its payload bytes.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        run_one: Callable[[T], Awaitable[R]],
        *,
        key: Callable[[T], Hashable],
        size: Callable[[T], int],
        max_in_flight: int = 2,
        max_items: int = MAX_BATCH_ITEMS,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        if max_in_flight < 1 or max_items < 1 or max_bytes < 1:
            raise ValueError("max_in_flight, max_items and max_bytes must be at least 1")
        self._run_batch = run_batch
        self._run_one = run_one
        self._key = key
        self._size = size
        self.max_in_flight = max_in_flight
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.stats = BatchStats()
        self._pending: list[_Waiting[T, R]] = []
        self._busy: dict[Hashable, int] = {}  # key -> items of it in flight
        self._tasks: set[asyncio.Task[bool]] = set()
        # The batch task created that has not taken its items yet (they will be its).
        self._starter: asyncio.Task[bool] | None = None

    async def submit(self, item: T) -> R:
        """Commit ``item`` (with whatever else is submitted meanwhile); its own result.

        A caller cancelled before its batch starts is dropped from it; once the
        batch is in flight, the item commits whether or not its caller still waits.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Waiting(item, self._key(item), self._size(item), future))
        self._maybe_start()
        return await future

    async def drain(self) -> None:
        """Wait until every batch in flight (and every item submitted) is answered."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)

    @property
    def pending(self) -> int:
        """Items submitted that no batch has taken yet."""
        return sum(1 for waiting in self._pending if not waiting.future.done())

    @property
    def in_flight(self) -> int:
        """Batches started and not yet answered."""
        return len(self._tasks)

    # -- the batches -------------------------------------------------------------

    def _maybe_start(self) -> None:
        # A task that has not taken its items yet will take these too.
        if self._pending and self._starter is None and len(self._tasks) < self.max_in_flight:
            task = asyncio.create_task(self._run(), name="pts-group-commit")
            self._starter = task
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[bool]) -> None:
        self._tasks.discard(task)
        if self._starter is task:  # cancelled before it ran (its loop is closing)
            self._starter = None
        # A task that took nothing (every pending key was in flight) starts no other:
        # the batch holding those keys does, when it finishes.
        if task.cancelled() or task.exception() is not None or task.result():
            self._maybe_start()

    def _take(self) -> list[_Waiting[T, R]]:
        """The next batch: pending items in arrival order, none whose key is in flight
        (nor any after one held back for that reason), within the size limits."""
        batch: list[_Waiting[T, R]] = []
        kept: list[_Waiting[T, R]] = []
        held: set[Hashable] = set()
        total = 0
        for waiting in self._pending:
            if waiting.future.done():  # its caller was cancelled: never sent
                continue
            fits = len(batch) < self.max_items and (
                not batch or total + waiting.size <= self.max_bytes
            )
            if waiting.key in held or waiting.key in self._busy or not fits:
                held.add(waiting.key)
                kept.append(waiting)
                continue
            batch.append(waiting)
            total += waiting.size
        self._pending = kept
        for waiting in batch:
            self._busy[waiting.key] = self._busy.get(waiting.key, 0) + 1
        return batch

    async def _run(self) -> bool:
        self._starter = None
        batch = self._take()
        try:
            if batch:
                await self._commit(batch)
            return bool(batch)
        finally:
            for waiting in batch:
                left = self._busy[waiting.key] - 1
                if left:
                    self._busy[waiting.key] = left
                else:
                    del self._busy[waiting.key]

    async def _commit(self, batch: list[_Waiting[T, R]]) -> None:
        stats = self.stats
        stats.items += len(batch)
        stats.sizes.append(len(batch))
        del stats.sizes[:-1000]
        if len(batch) == 1:
            stats.singles += 1
            await self._alone(batch[0])
            return
        stats.batches += 1
        try:
            results = await self._run_batch([w.item for w in batch])
        except StoreUnavailable as exc:
            for waiting in batch:
                _answer(waiting.future, exc)
            return
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception:  # noqa: BLE001 - each item is retried alone and gets its own answer
            stats.fallbacks += 1
            for waiting in batch:
                stats.singles += 1
                await self._alone(waiting)
            return
        assert len(results) == len(batch), "a batch answered a different number of items"
        for waiting, result in zip(batch, results, strict=True):
            _answer(waiting.future, result)

    async def _alone(self, waiting: _Waiting[T, R]) -> None:
        try:
            result: R | BaseException = await self._run_one(waiting.item)
        except asyncio.CancelledError:
            waiting.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the item's caller
            result = exc
        _answer(waiting.future, result)


def _answer(future: asyncio.Future[R], result: R | BaseException) -> None:
    if future.done():  # the caller gave up waiting
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)

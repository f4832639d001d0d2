"""The group-commit queue's rules, on fake statements (no database): who shares a
batch, who runs alone, and that every caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pts.errors import StoreUnavailable
from pts.store.group_commit import GroupCommit

Item = tuple[str, int]  # (key, value); a negative value fails


async def turns(n: int = 5) -> None:
    """Let the loop run its ready callbacks a few times (tasks start, submit, take)."""
    for _ in range(n):
        await asyncio.sleep(0)


class Fake:
    """Statements that record what they were given; ``gate`` holds them until set."""

    def __init__(self) -> None:
        self.batches: list[list[Item]] = []
        self.singles: list[Item] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.batch_error: BaseException | None = None

    async def run_batch(self, items: Sequence[Item]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.batch_error is not None:
            raise self.batch_error
        return [v if v >= 0 else ValueError(f"bad {v}") for _, v in items]

    async def run_one(self, item: Item) -> int:
        self.singles.append(item)
        await self.gate.wait()
        if item[1] < 0:
            raise ValueError(f"bad {item[1]}")
        return item[1]

    def queue(self, max_in_flight: int = 1) -> GroupCommit[Item, int]:
        return GroupCommit(
            self.run_batch,
            self.run_one,
            key=lambda item: item[0],
            size=lambda _item: 1,
            max_in_flight=max_in_flight,
        )


async def test_a_lone_item_runs_alone_at_once() -> None:
    fake = Fake()
    queue = fake.queue()
    for n in range(5):
        assert await queue.submit(("a", n)) == n
    assert fake.singles == [("a", n) for n in range(5)]
    assert fake.batches == []
    assert queue.stats.sizes == [1] * 5
    assert queue.stats.transactions == 5


async def test_items_submitted_together_share_a_batch_and_fail_alone() -> None:
    fake = Fake()
    queue = fake.queue()
    results = await asyncio.gather(
        *(queue.submit((f"s{n}", -1 if n == 3 else n)) for n in range(6)),
        return_exceptions=True,
    )
    assert [r if isinstance(r, int) else str(r) for r in results] == [0, 1, 2, "bad -1", 4, 5]
    assert len(fake.batches) == 1
    assert fake.singles == []
    assert queue.stats.transactions == 1


async def test_items_arriving_during_a_commit_join_the_next_one() -> None:
    fake = Fake()
    queue = fake.queue()
    fake.gate.clear()
    first = asyncio.ensure_future(queue.submit(("a", 0)))
    await turns()  # the first batch starts
    rest = [asyncio.ensure_future(queue.submit((f"s{n}", n))) for n in range(1, 5)]
    await turns()
    assert queue.pending == 4
    assert queue.in_flight == 1
    fake.gate.set()
    assert await asyncio.gather(first, *rest) == [0, 1, 2, 3, 4]
    assert fake.singles == [("a", 0)]
    assert fake.batches == [[(f"s{n}", n) for n in range(1, 5)]]


async def test_a_batch_that_raises_runs_each_item_alone() -> None:
    fake = Fake()
    fake.batch_error = RuntimeError("deadlock detected")
    queue = fake.queue()
    results = await asyncio.gather(
        *(queue.submit(("k", v)) for v in (1, -2, 3)), return_exceptions=True
    )
    assert [r if isinstance(r, int) else str(r) for r in results] == [1, "bad -2", 3]
    assert fake.singles == [("k", 1), ("k", -2), ("k", 3)]  # in arrival order
    assert queue.stats.fallbacks == 1


async def test_an_unavailable_database_answers_every_caller_so() -> None:
    fake = Fake()
    fake.batch_error = StoreUnavailable("database unavailable")
    queue = fake.queue()
    results = await asyncio.gather(
        *(queue.submit((f"s{n}", n)) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert fake.singles == []  # no retry against a database that is down


async def test_a_key_in_flight_waits_so_its_items_stay_in_order() -> None:
    fake = Fake()
    queue = fake.queue(max_in_flight=2)
    fake.gate.clear()
    first = asyncio.ensure_future(queue.submit(("a", 0)))
    await turns()
    later = [asyncio.ensure_future(queue.submit(item)) for item in (("a", 1), ("b", 2), ("a", 3))]
    await turns()
    # The second slot took b only: a's next items wait for the batch holding a.
    assert fake.batches == []
    assert fake.singles == [("a", 0), ("b", 2)]
    fake.gate.set()
    assert await asyncio.gather(first, *later) == [0, 1, 2, 3]
    assert fake.batches == [[("a", 1), ("a", 3)]]


async def test_a_caller_cancelled_before_its_batch_is_never_sent() -> None:
    fake = Fake()
    queue = fake.queue()
    fake.gate.clear()
    first = asyncio.ensure_future(queue.submit(("a", 0)))
    await turns()
    gone = asyncio.ensure_future(queue.submit(("b", 1)))
    kept = asyncio.ensure_future(queue.submit(("c", 2)))
    await turns()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    fake.gate.set()
    assert list(await asyncio.gather(first, kept)) == [0, 2]
    assert fake.singles == [("a", 0), ("c", 2)]
    await queue.drain()
    assert queue.in_flight == 0

"""Background tasks stop though a library swallowed their cancellation (pts.tasks).

Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives as the
awaited thing completes; psycopg_pool waits for connections that way. The fakes
here swallow a cancellation on purpose, the way that race does.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from pts.stats import Counters
from pts.store.psycopg_store import PsycopgStore
from pts.tasks import raise_if_cancelling, stop_tasks
from pts.upkeep import _quietly


async def _swallows_once(swallowed: list[int]) -> None:
    """A loop that eats its first cancellation, as the pool race does, then goes on."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(1)


async def test_stop_tasks_cancels_again_a_task_that_swallowed_the_first_cancellation() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(_swallows_once(swallowed))
    await asyncio.sleep(0)
    async with asyncio.timeout(30):  # a hang guard: without the second cancel, forever
        await stop_tasks([task], "test")
    assert swallowed == [1]
    assert task.cancelled()


async def test_stop_tasks_gives_up_on_a_task_that_never_stops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("pts.tasks.RECANCEL_AFTER", 0.01)
    monkeypatch.setattr("pts.tasks.RECANCEL_TIMES", 3)
    cancels: list[int] = []
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancels.append(1)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(30):
        await stop_tasks([task], "the stubborn work")
    assert len(cancels) == 3
    assert "the stubborn work: 1 task(s) did not stop" in caplog.text
    release.set()
    await task


async def test_stop_tasks_retrieves_the_failures_of_tasks_that_already_ended() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await stop_tasks([task], "test")  # does not raise the task's error
    assert task.done()


class _SwallowingPool:
    """A psycopg pool stand-in whose connection checkout eats one cancellation and
    hands the connection over anyway, as psycopg_pool does when the race hits."""

    def __init__(self) -> None:
        self.swallowed = 0
        self.executed: list[str] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[_RecordingConnection]:
        try:
            await asyncio.sleep(3600)  # waiting for a free connection
        except asyncio.CancelledError:
            self.swallowed += 1
        yield _RecordingConnection(self.executed)


class _RecordingConnection:
    def __init__(self, executed: list[str]) -> None:
        self.executed = executed

    @contextlib.asynccontextmanager
    async def cursor(self, **_kwargs: object) -> AsyncIterator[_RecordingConnection]:
        yield self

    async def execute(self, query: str, _params: object) -> None:
        self.executed.append(query)

    async def fetchall(self) -> list[object]:
        return []

    description = None


async def test_the_psycopg_store_honours_a_cancellation_its_pool_swallowed() -> None:
    store = PsycopgStore("postgresql://unused")
    pool = _SwallowingPool()
    store._pool = pool  # type: ignore[assignment]
    task = asyncio.create_task(store.get_stream(uuid.uuid4()))
    await asyncio.sleep(0)
    task.cancel()
    # Waited for without cancelling it again: a check that cancels would hide the bug.
    await asyncio.wait({task}, timeout=5)
    assert pool.swallowed == 1
    assert task.cancelled()
    assert pool.executed == []  # the query never ran


async def test_a_failure_in_place_of_a_cancellation_still_cancels() -> None:
    async def store_call() -> int:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise OSError("connection closed during the rollback") from None
        return 0

    counters = Counters()
    task = asyncio.create_task(_quietly(store_call(), "sweep", counters))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert counters.database_errors == 0


async def test_raise_if_cancelling_is_quiet_in_a_task_nobody_cancelled() -> None:
    raise_if_cancelling()  # the test's own task: not cancelled, so no raise

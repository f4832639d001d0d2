"""Waiting on a condition, never on the clock: the tests' one polling helper.

Each wait is bounded by a guard (a hang guard: a test that hangs fails with what
it waited for, never an assertion about speed).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from pts import PersistentTextStreaming
from pts.stats import Stats

__all__ = ["GUARD", "until", "until_stats"]

GUARD = 20.0
"""Seconds a condition may take to come true."""

POLL = 0.005
"""Seconds between two looks (the condition has no event to wait on)."""


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, guard: float = GUARD
) -> None:
    """Return once ``condition()`` (a function or a coroutine function) is true; fail
    with ``what`` if it is not within ``guard`` seconds."""
    try:
        async with asyncio.timeout(guard):
            while True:
                result = condition()
                if await result if inspect.isawaitable(result) else result:
                    return
                await asyncio.sleep(POLL)
    except TimeoutError:
        raise AssertionError(f"not within {guard:g} s: {what}") from None


async def until_stats(
    pts: PersistentTextStreaming, condition: Callable[[Stats], bool], what: str
) -> Stats:
    """The first :meth:`~pts.PersistentTextStreaming.stats` snapshot that meets
    ``condition`` (for example: the server holds a subscriber before the write that
    should wake it); fails with ``what`` if none does within the guard."""
    snapshots: list[Stats] = []

    def met() -> bool:
        snapshots.append(pts.stats())
        del snapshots[:-1]
        return condition(snapshots[-1])

    await until(met, what)
    return snapshots[-1]

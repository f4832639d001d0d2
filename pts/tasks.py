"""Stopping background tasks for sure, though a library swallowed the cancellation.

On Python 3.11, ``asyncio.wait_for`` returns its result and drops a
cancellation that arrives as the awaited thing completes (fixed in 3.12).
psycopg_pool waits for a free connection that way, so a task cancelled just as
the pool hands it a connection carries on as if nothing happened: a loop that
only ends by cancellation then runs forever, and whoever awaits it hangs
(seen: a component's close() waiting on its sweeper). Two defences, used
together: :func:`raise_if_cancelling` after an await that may have eaten a
cancellation (the psycopg store's one connection checkout, a loop's own
``wait_for``, a failure raised in place of a cancellation), and
:func:`stop_tasks`, which cancels again whatever is still running a moment
later, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

__all__ = ["raise_if_cancelling", "stop_tasks"]

logger = logging.getLogger("pts")

RECANCEL_AFTER = 1.0
"""Seconds a cancelled task gets to end before it is cancelled again."""
RECANCEL_TIMES = 10
"""Cancellations sent at most: past them, stop_tasks gives up on the task and says so."""


def raise_if_cancelling() -> None:
    """Raise CancelledError if the current task was asked to stop.

    Call it where a cancellation may have been swallowed below (a database
    call): ``Task.cancelling()`` still counts the request though the
    CancelledError never arrived.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], what: str) -> None:
    """Cancel ``tasks`` and wait for them to end, cancelling again any that go on.

    Never raises the tasks' own exceptions; a cancellation of the caller still
    propagates. A task that outlives ``RECANCEL_TIMES`` cancellations is left
    running, with a warning naming ``what``, rather than hanging the caller.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    for _ in range(RECANCEL_TIMES):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER)
    if pending:
        logger.warning("%s: %d task(s) did not stop when cancelled", what, len(pending))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit

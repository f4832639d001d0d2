"""A flusher stopped just as it is woken still stops (Python 3.11's ``wait_for``
drops a cancellation that arrives together with the result it waited for)."""

from __future__ import annotations

import asyncio
import uuid

from pts.errors import StreamClosed
from pts.flush import Flusher, FlushPolicy
from pts.testing import MemoryStore
from tests.support.waiting import until


async def test_a_stop_that_meets_a_wake_ends_the_flusher() -> None:
    stream_id = uuid.uuid4()
    flusher = Flusher(MemoryStore(), stream_id, offset=0, policy=FlushPolicy(max_delay=3600))
    name = f"pts-flush-{stream_id}"

    def running() -> bool:
        return any(task.get_name() == name for task in asyncio.all_tasks())

    flusher.start()
    flusher.write("no sentence ends here")  # buffered, due in an hour: a timed wait
    await asyncio.sleep(0)  # the task runs up to its wait_for
    await asyncio.sleep(0)
    assert running()
    flusher.write(" and more")  # wakes it ...
    flusher.stop(StreamClosed(stream_id, "done"))  # ... and cancels it in the same tick
    await until(lambda: not running(), "the stopped flusher's task ended")
    assert flusher.appends == 0
    assert isinstance(flusher.failure, StreamClosed)

"""A stop from another process: the driving process is asked (``Store.request_stop``), stores
what it buffered and ends the stream; with no one to ask, the caller ends it itself.

Two components on one database stand for two processes (each its own pool and
LISTEN connection). Text without a sentence end under a flush policy with no
timer stays buffered, so only the stop request can store it.
"""

from __future__ import annotations

import pytest

from pts import PersistentTextStreaming, StreamStatus
from pts.flush import FlushPolicy
from pts.live.notification import Notification, parse_batch
from pts.operations import STOP_WAIT

NEVER = 3600.0


async def test_a_writer_elsewhere_stores_its_buffered_text_when_stopped(db_url: str) -> None:
    writing = PersistentTextStreaming(dsn=db_url, flush=FlushPolicy(max_delay=NEVER), sweeper=False)
    async with writing, PersistentTextStreaming(dsn=db_url, sweeper=False) as other:
        writer = await writing.create_write_stream()
        await writer.write("buffered, never flushed")
        assert (await other.get_stream_body(writer.stream_id)).text == ""
        info = await other.cancel(writer.stream_id, reason="stop pressed")
        assert (info.status, info.abort_reason) == (StreamStatus.ABORTED, "stop pressed")
        assert (await other.get_stream_body(writer.stream_id)).text == "buffered, never flushed"
        assert writer.finished
        assert len(writing.writers) == 0


async def test_with_no_driver_alive_the_caller_ends_the_stream(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url, sweeper=False) as pts:
        # Streaming, but no process drives it (its driver died a moment ago).
        orphan = await pts.store.create_stream(status=StreamStatus.STREAMING)
        assert await pts.store.request_stop(orphan.id, "stop") is True
        info = await pts.cancel(orphan.id, reason="stop")  # asked, unanswered: ends it itself
        assert (info.status, info.abort_reason) == (StreamStatus.ABORTED, "stop")
        assert STOP_WAIT <= 5.0  # the longest a cancel waits for a dead driver


async def test_only_a_streaming_stream_is_asked_to_stop(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url, sweeper=False) as pts:
        pending = await pts.create_stream()  # its id
        assert await pts.store.request_stop(pending) is False
        done = await pts.store.create_stream(status=StreamStatus.STREAMING)
        await pts.store.set_status(done.id, StreamStatus.DONE)
        assert await pts.store.request_stop(done.id) is False
        streaming = await pts.store.create_stream(status=StreamStatus.STREAMING)
        assert await pts.store.request_stop(streaming.id, "x" * 5000) is False  # too long to send
        assert (await pts.cancel(streaming.id, reason="x" * 5000)).status is StreamStatus.ABORTED


def test_a_stop_request_parses_with_its_reason_and_old_entries_are_no_request() -> None:
    stream = "00000000-0000-0000-0000-000000000001"
    base = f'"id": "{stream}", "size": 3, "status": "streaming", "closed": false'
    (stop,), problems = parse_batch(f'[{{{base}, "stop": true, "reason": "user"}}]')
    assert (stop.stop, stop.reason, problems) == (True, "user", [])
    plain = Notification.from_payload(f"{{{base}}}")
    assert (plain.stop, plain.reason) == (False, None)
    for bad in ('"stop": 1', '"stop": true, "reason": 5'):
        with pytest.raises(ValueError, match=r"'stop'|'reason'"):
            Notification.from_payload(f"{{{base}, {bad}}}")

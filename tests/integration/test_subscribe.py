"""Live subscribers: one tail per stream per process, exact offsets, no loss, no blocking."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pts import (
    InvalidOffset,
    PersistentTextStreaming,
    StreamNotFound,
    StreamStatus,
    Update,
)
from pts.flush import FlushPolicy
from tests.support.waiting import until_stats


@pytest.fixture
async def pts(db_url: str) -> AsyncIterator[PersistentTextStreaming]:
    async with PersistentTextStreaming(
        dsn=db_url, flush=FlushPolicy(max_delay=3600), sweeper=False
    ) as instance:
        yield instance


async def collect(
    pts: PersistentTextStreaming, stream_id: uuid.UUID, offset: int = 0
) -> list[Update]:
    return [u async for u in pts.subscribe(stream_id, offset)]


def text_of(updates: list[Update]) -> str:
    return "".join(u.text for u in updates)


SENTENCES = [f"Sentence {i}: ünïcode 你好 🎉. " for i in range(30)]


async def produce(
    pts: PersistentTextStreaming, stream_id_box: list[uuid.UUID], pause: float = 0.005
) -> str:
    writer = await pts.create_write_stream()
    stream_id_box.append(writer.stream_id)
    for sentence in SENTENCES:
        for word in sentence.split(" ")[:-1]:
            await writer.write(word + " ")
        await asyncio.sleep(pause)
    await writer.close()
    return "".join(SENTENCES)


async def test_subscriber_sees_the_same_final_text(pts: PersistentTextStreaming) -> None:
    writer = await pts.create_write_stream()
    subscription = asyncio.create_task(collect(pts, writer.stream_id))
    for sentence in SENTENCES:
        await writer.write(sentence)
        await asyncio.sleep(0.002)
    await writer.close()
    updates = await asyncio.wait_for(subscription, 10)
    assert text_of(updates) == "".join(SENTENCES)
    assert updates[-1].finished
    assert updates[-1].status is StreamStatus.DONE
    assert updates[-1].end == len("".join(SENTENCES).encode())
    # Offsets chain: each update starts where the previous ended.
    for before, after in itertools.pairwise(updates):
        assert after.offset == before.end


async def test_joining_mid_stream_gets_the_text_so_far_then_the_rest(
    pts: PersistentTextStreaming,
) -> None:
    writer = await pts.create_write_stream()
    half = len(SENTENCES) // 2
    for sentence in SENTENCES[:half]:
        await writer.write(sentence)
    while writer.size < len("".join(SENTENCES[:half]).encode()):
        await asyncio.sleep(0.01)
    updates: list[Update] = []

    async def watch() -> None:
        async for update in pts.subscribe(writer.stream_id):
            updates.append(update)

    watcher = asyncio.create_task(watch())
    while not updates:
        await asyncio.sleep(0.01)
    assert updates[0].offset == 0
    assert updates[0].text == "".join(SENTENCES[:half])
    for sentence in SENTENCES[half:]:
        await writer.write(sentence)
    await writer.close()
    await asyncio.wait_for(watcher, 10)
    assert text_of(updates) == "".join(SENTENCES)


async def test_resume_from_every_update_end_is_byte_exact(pts: PersistentTextStreaming) -> None:
    writer = await pts.create_write_stream()
    for sentence in SENTENCES:
        await writer.write(sentence)
    await writer.close()
    whole = "".join(SENTENCES)
    ends = [0]
    # Resume from the end of every flush boundary a live subscriber would report.
    for update in await collect(pts, writer.stream_id):
        ends.append(update.end)
    encoded = whole.encode()
    for end in ends:
        rest = await collect(pts, writer.stream_id, end)
        assert text_of(rest) == encoded[end:].decode()


async def test_killing_the_listener_mid_stream_loses_nothing(
    pts: PersistentTextStreaming, db_url: str
) -> None:
    box: list[uuid.UUID] = []
    producer = asyncio.create_task(produce(pts, box, pause=0.01))
    while not box:
        await asyncio.sleep(0.005)
    subscription = asyncio.create_task(collect(pts, box[0]))
    await until_stats(pts, lambda s: s.subscribers == 1, "subscribed before the kill")
    conn = await asyncpg.connect(db_url)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
        )
        assert killed >= 1
    finally:
        await conn.close()
    expected = await producer
    updates = await asyncio.wait_for(subscription, 20)
    assert text_of(updates) == expected
    assert updates[-1].status is StreamStatus.DONE


async def test_a_stalled_subscriber_blocks_no_one(db_url: str) -> None:
    async with PersistentTextStreaming(
        dsn=db_url, flush=FlushPolicy(max_delay=3600), sweeper=False, subscriber_buffer=2
    ) as pts:
        writer = await pts.create_write_stream()
        stalled = pts.subscribe(writer.stream_id)
        first = await anext(stalled)  # subscribed, then never reads again (for now)
        healthy = asyncio.create_task(collect(pts, writer.stream_id))
        for sentence in SENTENCES:
            await writer.write(sentence)
            await asyncio.sleep(0.002)
        # The producer finished although one subscriber read nothing since.
        await writer.close()
        assert text_of(await asyncio.wait_for(healthy, 10)) == "".join(SENTENCES)
        # The stalled one overflowed its buffer of 2 and catches up from the table.
        rest = [u async for u in stalled]
        assert first.text + text_of(rest) == "".join(SENTENCES)
        assert rest[-1].status is StreamStatus.DONE


async def test_one_read_per_notification_however_many_subscribers(
    pts: PersistentTextStreaming, db_url: str
) -> None:
    writer = await pts.create_write_stream()
    notifications = 0

    def count(*_args: object) -> None:
        nonlocal notifications
        notifications += 1

    conn = await asyncpg.connect(db_url)
    await conn.add_listener("pts_v1", count)
    try:
        before = pts.stats()
        subscribers = [asyncio.create_task(collect(pts, writer.stream_id)) for _ in range(50)]
        while pts.stats().subscribers < 50:
            await asyncio.sleep(0.01)
        assert pts.stats().tails == before.tails + 1
        reads_before = pts.stats().tail_reads
        for sentence in SENTENCES:
            await writer.write(sentence)
            await asyncio.sleep(0.005)
        await writer.close()
        results = await asyncio.wait_for(asyncio.gather(*subscribers), 20)
        assert all(text_of(r) == "".join(SENTENCES) for r in results)
        after = pts.stats()
        tail_reads = after.tail_reads - reads_before
        # At most one tail read per notification, not one per subscriber.
        assert 0 < tail_reads <= notifications
        assert notifications <= len(SENTENCES) + 2
        # The component saw every notification our own listener saw.
        async with asyncio.timeout(10):
            while pts.stats().notifications - before.notifications < notifications:
                await asyncio.sleep(0.01)
        assert pts.stats().notifications - before.notifications == notifications
        assert (after.subscribers, after.listener_connected) == (0, True)
    finally:
        await conn.close()


async def test_connections_do_not_grow_with_subscribers(db_url: str) -> None:
    pool_max = 3
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False, pool_max_size=pool_max)
    await pts.open()
    conn = await asyncpg.connect(db_url)
    try:
        count_sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        writers = [await pts.create_write_stream() for _ in range(5)]
        before = await conn.fetchval(count_sql)
        subs = [asyncio.create_task(collect(pts, w.stream_id)) for w in writers for _ in range(40)]
        await until_stats(pts, lambda s: s.subscribers == 200, "all 200 are subscribed")
        reads = pts.stats().tail_reads
        for w in writers:
            await w.write("Hello. ")
        await until_stats(pts, lambda s: s.tail_reads >= reads + 5, "each tail read its news")
        assert pts.stats().subscribers == 200
        during = await conn.fetchval(count_sql)
        for w in writers:
            await w.close()
        await asyncio.wait_for(asyncio.gather(*subs), 20)
        # 200 subscribers: still at most the pool plus the one LISTEN connection.
        assert before <= during <= pool_max + 1
    finally:
        await conn.close()
        await pts.close()


async def test_bad_subscriptions_fail_clearly(pts: PersistentTextStreaming) -> None:
    with pytest.raises(StreamNotFound):
        await collect(pts, uuid.uuid4())
    writer = await pts.create_write_stream()
    await writer.write("é")  # two bytes
    await writer.close()
    with pytest.raises(InvalidOffset):
        await collect(pts, writer.stream_id, 3)
    with pytest.raises(InvalidOffset):
        await collect(pts, writer.stream_id, 1)  # inside the character
    with pytest.raises(InvalidOffset):
        await collect(pts, writer.stream_id, -1)


async def test_deleting_a_watched_stream_ends_the_subscription(
    pts: PersistentTextStreaming,
) -> None:
    writer = await pts.create_write_stream()
    await writer.write("Soon gone. ")
    subscription = asyncio.create_task(collect(pts, writer.stream_id))
    await until_stats(pts, lambda s: s.subscribers == 1, "the watcher is subscribed")
    await pts.delete_stream(writer.stream_id)
    with pytest.raises(StreamNotFound):
        await asyncio.wait_for(subscription, 10)


async def test_read_stream_by_client_id(pts: PersistentTextStreaming) -> None:
    writer = await pts.create_write_stream(client_id="job-1")
    reader = asyncio.create_task(_read_all(pts, "job-1"))
    for sentence in SENTENCES[:5]:
        await writer.write(sentence)
    await writer.close()
    assert await asyncio.wait_for(reader, 10) == "".join(SENTENCES[:5])


async def _read_all(pts: PersistentTextStreaming, client_id: str) -> str:
    return "".join([t async for t in pts.read_stream(client_id=client_id)])

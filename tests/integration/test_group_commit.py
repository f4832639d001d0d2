"""Group commit on real Postgres, both drivers: appends submitted together share one
transaction and one round of notifications, each caller gets its own answer, a lone
append is a transaction of its own (no timer), and a batch that raises as a whole is
applied item by item.

Transactions are counted, not timed: every chunk row carries the id of the
transaction that inserted it (``xmin``), so the number of distinct ``xmin``
values among a set of chunks is the number of transactions that wrote them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from pts.core import PersistentTextStreaming
from pts.errors import OffsetConflict, StreamClosed, StreamNotFound, StreamTooLarge
from pts.live.listener import Listener
from pts.live.notification import Notification
from pts.models import AppendOutcome, Producer, StreamStatus
from pts.settings import Driver
from pts.store import SQLStore
from tests.support.waiting import until


@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(db_url)
    try:
        yield conn
    finally:
        await conn.close()


async def transactions(admin: asyncpg.Connection[Any], ids: list[uuid.UUID]) -> int:
    """How many transactions wrote the chunks of these streams."""
    count = await admin.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM pts.chunks WHERE stream_id = ANY($1::uuid[])",
        ids,
    )
    return int(count)


class Channels:
    """Every payload NOTIFYed on pts_v1 and pts_v2 of one database, as it arrived."""

    def __init__(self) -> None:
        self.payloads: dict[str, list[str]] = {"pts_v1": [], "pts_v2": []}

    def on_notify(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        self.payloads[channel].append(str(payload))

    def sizes(self) -> dict[str, int]:
        """The last size each stream was announced with, on either channel."""
        seen: dict[str, int] = {}
        for payload in self.payloads["pts_v1"]:
            note = json.loads(payload)
            seen[note["id"]] = note["size"]
        for payload in self.payloads["pts_v2"]:
            for note in json.loads(payload):
                seen[note["id"]] = note["size"]
        return seen


@pytest.fixture
async def channels(admin: asyncpg.Connection[Any]) -> Channels:
    heard = Channels()
    await admin.add_listener("pts_v1", heard.on_notify)
    await admin.add_listener("pts_v2", heard.on_notify)
    return heard


# -- driven appends ---------------------------------------------------------------


async def test_a_batch_with_failing_appends_commits_the_others(
    store: SQLStore, admin: asyncpg.Connection[Any]
) -> None:
    ok = [await store.create_stream() for _ in range(4)]
    stale = await store.create_stream()
    await store.append(stale.id, b"12345", offset=0)
    closed = await store.create_stream()
    await store.append(closed.id, b"x", offset=0, finish=StreamStatus.DONE)
    capped = await store.create_stream()
    store.max_stream_size = 100
    before = store.append_queue.stats.batches

    results = await asyncio.gather(
        store.append(ok[0].id, b"a" * 10, offset=0),
        store.append(stale.id, b"late", offset=2),  # the stream is at 5
        store.append(ok[1].id, b"b" * 20, offset=0),
        store.append(closed.id, b"more", offset=1),
        store.append(capped.id, b"c" * 101, offset=0),
        store.append(uuid.uuid4(), b"nobody", offset=0),
        store.append(ok[2].id, b"d" * 30, offset=0, finish=StreamStatus.DONE),
        store.append(ok[3].id, b"e" * 40, offset=0),
        return_exceptions=True,
    )

    assert store.append_queue.stats.batches == before + 1  # one statement for all eight
    assert results[0] == 10
    assert isinstance(results[1], OffsetConflict)
    assert results[2] == 20
    assert isinstance(results[3], StreamClosed)
    assert isinstance(results[4], StreamTooLarge)
    assert isinstance(results[5], StreamNotFound)
    assert results[6] == 30
    assert results[7] == 40
    for info, data in zip(ok, (b"a" * 10, b"b" * 20, b"d" * 30, b"e" * 40), strict=True):
        assert (await store.read(info.id)).data == data
    assert (await store.get_stream(ok[2].id)).status is StreamStatus.DONE
    assert (await store.read(stale.id)).data == b"12345"
    assert (await store.read(capped.id)).size == 0
    assert await transactions(admin, [s.id for s in ok]) == 1


async def test_a_lone_append_is_a_transaction_of_its_own(
    store: SQLStore, admin: asyncpg.Connection[Any]
) -> None:
    info = await store.create_stream()
    queue = store.append_queue
    start = queue.stats.transactions
    for n in range(20):
        assert await store.append(info.id, b"x", offset=n) == n + 1
    # Twenty sequential appends: twenty batches of one, no timer gathering any.
    assert queue.stats.transactions - start == 20
    assert queue.stats.sizes[-20:] == [1] * 20
    assert await transactions(admin, [info.id]) == 20


async def test_concurrent_appends_share_transactions_and_notifications(
    store: SQLStore, admin: asyncpg.Connection[Any], channels: Channels
) -> None:
    streams = [await store.create_stream() for _ in range(40)]
    await until(lambda: len(channels.sizes()) == 40, "the creations were announced")
    v1_before = len(channels.payloads["pts_v1"])

    async def writer(stream_id: uuid.UUID) -> None:
        for n in range(5):
            await store.append(stream_id, b"y", offset=n)

    await asyncio.gather(*(writer(s.id) for s in streams))

    appends = 40 * 5
    written = await transactions(admin, [s.id for s in streams])
    assert written < appends / 4  # five rounds of 40 writers: about five transactions
    assert written == store.append_queue.stats.transactions
    await until(
        lambda: all(channels.sizes().get(str(s.id)) == 5 for s in streams),
        "every stream was announced at its final size",
    )
    notifies = len(channels.payloads["pts_v2"]) + len(channels.payloads["pts_v1"]) - v1_before
    assert notifies <= written  # one NOTIFY (or none: a lone append's is the trigger's)


async def test_a_batch_that_raises_is_applied_append_by_append(
    store: SQLStore, admin: asyncpg.Connection[Any]
) -> None:
    # A trigger that fails any batch touching one stream, and only a batch (the single
    # statement sets no pts.notify): the batch raises as a whole, each append is retried.
    boom = await store.create_stream()
    await admin.execute(
        f"""
        CREATE FUNCTION pts.test_fail_batches() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = '{boom.id}' AND current_setting('pts.notify', true) = 'batched' THEN
                RAISE EXCEPTION 'a batch touched the poisoned stream';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER test_fail_batches BEFORE UPDATE ON pts.streams
            FOR EACH ROW EXECUTE FUNCTION pts.test_fail_batches();
        """
    )
    others = [await store.create_stream() for _ in range(3)]
    stats = store.append_queue.stats
    fallbacks = stats.fallbacks
    results = await asyncio.gather(
        store.append(others[0].id, b"one", offset=0),
        store.append(boom.id, b"boom", offset=0),
        store.append(others[1].id, b"two", offset=1),  # wrong: the stream is empty
        store.append(others[2].id, b"three", offset=0),
        return_exceptions=True,
    )
    assert stats.fallbacks == fallbacks + 1
    assert results[0] == 3
    assert results[1] == 4
    assert isinstance(results[2], OffsetConflict)
    assert results[3] == 5
    assert (await store.read(boom.id)).data == b"boom"


# -- protocol appends -------------------------------------------------------------


async def test_protocol_appends_in_one_batch_get_their_own_outcomes(
    store: SQLStore, admin: asyncpg.Connection[Any]
) -> None:
    for path in ("p/ok1", "p/ok2", "p/producer", "p/seq", "p/closed", "p/type"):
        await store.ds_create(path, content_type="text/plain")
    first = await store.ds_append(
        "p/producer", b"v1", media_type="text/plain", producer=Producer("w", 2, 0)
    )
    assert first.outcome is AppendOutcome.APPENDED
    await store.ds_append("p/seq", b"s", media_type="text/plain", stream_seq="0005")
    await store.ds_append("p/closed", b"", media_type="text/plain", close=True)
    before = store.ds_append_queue.stats.batches

    results = await asyncio.gather(
        store.ds_append("p/ok1", b"first", media_type="text/plain"),
        store.ds_append(
            "p/producer", b"old", media_type="text/plain", producer=Producer("w", 1, 1)
        ),
        store.ds_append("p/seq", b"back", media_type="text/plain", stream_seq="0004"),
        store.ds_append("p/ok1", b"-second", media_type="text/plain"),
        store.ds_append("p/closed", b"late", media_type="text/plain"),
        store.ds_append("p/type", b"{}", media_type="application/json"),
        store.ds_append("p/missing", b"?", media_type="text/plain"),
        store.ds_append(
            "p/producer", b"gap", media_type="text/plain", producer=Producer("w", 2, 5)
        ),
        store.ds_append("p/ok2", b"x", media_type="text/plain", close=True),
    )

    assert store.ds_append_queue.stats.batches == before + 1
    assert [r.outcome for r in results] == [
        AppendOutcome.APPENDED,
        AppendOutcome.STALE_EPOCH,
        AppendOutcome.SEQ_CONFLICT,
        AppendOutcome.APPENDED,
        AppendOutcome.CLOSED,
        AppendOutcome.CONTENT_TYPE,
        AppendOutcome.NOT_FOUND,
        AppendOutcome.SEQ_GAP,
        AppendOutcome.APPENDED,
    ]
    assert (results[0].size, results[3].size) == (5, 12)  # one stream: in arrival order
    assert results[1].epoch == 2
    assert (results[7].seq, results[7].expected_seq) == (5, 1)
    assert results[8].closed
    ok1 = await store.ds_lookup("p/ok1")
    assert ok1 is not None
    assert (await store.read(ok1.stream.id)).data == b"first-second"


# -- notifications ------------------------------------------------------------------


async def test_a_big_batch_is_announced_in_payloads_under_8000_bytes(
    store: SQLStore, db_url: str, channels: Channels
) -> None:
    streams = [await store.create_stream() for _ in range(200)]
    woken: list[Notification] = []
    async with Listener(db_url) as listener:
        listener.add_handler(woken.append)
        await asyncio.gather(*(store.append(s.id, b"z" * 3, offset=0) for s in streams))
        ids = {s.id for s in streams}
        await until(
            lambda: {n.stream_id for n in woken if n.size == 3} == ids,
            "the listener heard every stream of the batch",
        )
    batch = [json.loads(p) for p in channels.payloads["pts_v2"]]
    assert len(batch) >= 2  # 200 entries do not fit one payload
    assert all(len(p.encode()) < 8000 for p in channels.payloads["pts_v2"])
    assert sorted(e["id"] for payload in batch for e in payload) == sorted(map(str, ids))
    # Each stream woke its handlers once, with its final state.
    assert sorted(n.stream_id for n in woken if n.size == 3) == sorted(ids)


async def test_with_notify_v1_a_batch_announces_each_stream_on_pts_v1(
    store: SQLStore, channels: Channels
) -> None:
    store.notify_v1 = True
    streams = [await store.create_stream() for _ in range(5)]
    await until(lambda: len(channels.payloads["pts_v1"]) == 5, "the creations were announced")
    await asyncio.gather(*(store.append(s.id, b"ab", offset=0) for s in streams))
    await until(lambda: len(channels.payloads["pts_v1"]) == 10, "one pts_v1 NOTIFY per stream")
    assert channels.payloads["pts_v2"] == []
    assert store.append_queue.stats.batches == 1
    assert all(channels.sizes()[str(s.id)] == 2 for s in streams)


async def test_pts_notify_v1_from_the_environment_reaches_the_store(
    db_url: str, driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for setting, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("PTS_NOTIFY_V1", setting)
        pts = PersistentTextStreaming(dsn=db_url, driver=driver, sweeper=False)
        await pts.open()
        try:
            store = pts.store
            assert isinstance(store, SQLStore)
            assert store.notify_v1 is expected
        finally:
            await pts.close()

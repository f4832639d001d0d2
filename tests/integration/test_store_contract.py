"""The store contract: every test runs on both drivers and on the in-memory store.

Ids show [asyncpg] / [psycopg] / [memory]. Tests that also take ``db_url`` look at
the database itself (plain SQL, chunk rows, the view, NOTIFY, separate pools) and
run on the two drivers only; tests/test_memory_store.py covers the memory store's
own notifications and clock.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from pts import (
    ClientIdTaken,
    InvalidInput,
    InvalidOffset,
    InvalidTransition,
    OffsetConflict,
    PathTaken,
    StreamClosed,
    StreamNotFound,
    StreamStatus,
)
from pts.models import StreamInfo
from pts.settings import Driver
from pts.store import SQLStore, create_store
from tests.support.waiting import until

S = StreamStatus
FINISHED = [S.DONE, S.ERROR, S.TIMEOUT, S.ABORTED]


async def test_create_and_get(store: SQLStore) -> None:
    info = await store.create_stream(metadata={"chat": 7, "tags": ["a", "é"]}, owner="u1")
    assert info.status is S.PENDING
    assert info.size == 0
    assert not info.closed
    assert info.content_type == "text/plain"
    assert info.metadata == {"chat": 7, "tags": ["a", "é"]}
    assert info.owner == "u1"
    assert info.heartbeat_at is None
    again = await store.get_stream(info.id)
    assert again == info


async def test_create_streaming_has_heartbeat(store: SQLStore) -> None:
    info = await store.create_stream(status=S.STREAMING)
    assert info.status is S.STREAMING
    assert info.heartbeat_at is not None


async def test_create_rejects_finished_status(store: SQLStore) -> None:
    with pytest.raises(InvalidInput):
        await store.create_stream(status=S.DONE)


async def test_client_id_is_unique(store: SQLStore) -> None:
    first = await store.create_stream(client_id="chat-1")
    with pytest.raises(ClientIdTaken) as caught:
        await store.create_stream(client_id="chat-1")
    assert caught.value.client_id == "chat-1"
    assert (await store.get_stream_by_client_id("chat-1")).id == first.id


async def test_path_is_unique(store: SQLStore) -> None:
    first = await store.create_stream(path="a/b", content_type="application/json")
    with pytest.raises(PathTaken):
        await store.create_stream(path="a/b")
    found = await store.get_stream_by_path("a/b")
    assert found.id == first.id
    assert found.content_type == "application/json"


async def test_unknown_stream_is_not_found_everywhere(store: SQLStore) -> None:
    missing = uuid.uuid4()
    with pytest.raises(StreamNotFound):
        await store.get_stream(missing)
    with pytest.raises(StreamNotFound):
        await store.get_stream_by_client_id("nope")
    with pytest.raises(StreamNotFound):
        await store.get_stream_by_path("nope")
    with pytest.raises(StreamNotFound):
        await store.append(missing, b"x", offset=0)
    with pytest.raises(StreamNotFound):
        await store.read(missing)
    with pytest.raises(StreamNotFound):
        await store.claim(missing)
    with pytest.raises(StreamNotFound):
        await store.set_status(missing, S.ABORTED)
    with pytest.raises(StreamNotFound):
        await store.delete_stream(missing)


async def test_malformed_id_is_not_found(store: SQLStore) -> None:
    with pytest.raises(StreamNotFound):
        await store.get_stream("not-a-uuid")  # type: ignore[arg-type]


async def test_append_and_read(store: SQLStore) -> None:
    info = await store.create_stream()
    assert await store.append(info.id, b"Hello. ", offset=0) == 7
    assert await store.append(info.id, b"World!", offset=7) == 13
    read = await store.read(info.id)
    assert read.data == b"Hello. World!"
    assert (read.offset, read.next_offset, read.size) == (0, 13, 13)
    assert read.up_to_date
    assert (await store.get_stream(info.id)).size == 13


async def test_read_from_offsets(store: SQLStore) -> None:
    info = await store.create_stream()
    size = 0
    for piece in (b"abc", b"defg", b"hi"):
        size = await store.append(info.id, piece, offset=size)
    whole = b"abcdefghi"
    for offset in range(len(whole) + 1):
        read = await store.read(info.id, offset)
        assert read.data == whole[offset:], offset
        assert read.next_offset == len(whole)


async def test_read_with_max_bytes_ends_on_a_chunk_boundary(store: SQLStore) -> None:
    info = await store.create_stream()
    size = 0
    for piece in (b"aaaa", b"bbbb", b"cccc"):
        size = await store.append(info.id, piece, offset=size)
    first = await store.read(info.id, 0, max_bytes=5)
    assert first.data == b"aaaabbbb"
    assert not first.up_to_date
    rest = await store.read(info.id, first.next_offset, max_bytes=5)
    assert rest.data == b"cccc"
    assert rest.up_to_date


async def test_read_parts_is_read_in_the_pieces_stored(store: SQLStore) -> None:
    info = await store.create_stream()
    size = 0
    for piece in (b"abc", b"defg", b"hi"):
        size = await store.append(info.id, piece, offset=size)
    for offset in range(size + 1):
        for max_bytes in (None, 1, 4):
            read = await store.read(info.id, offset, max_bytes)
            parts = await store.read_parts(info.id, offset, max_bytes)
            assert parts.data == read.data, (offset, max_bytes)
            assert all(parts.parts), "an empty part"
            assert (parts.offset, parts.next_offset, parts.size) == (
                read.offset,
                read.next_offset,
                read.size,
            )
            assert (parts.status, parts.closed, parts.at_boundary, parts.up_to_date) == (
                read.status,
                read.closed,
                read.at_boundary,
                read.up_to_date,
            )
    whole = await store.read_parts(info.id, 1)
    if isinstance(store, SQLStore):  # a part per stored row, the first cut at the offset
        assert whole.parts == (b"bc", b"defg", b"hi")
    else:
        assert whole.parts == (b"bcdefghi",)
    with pytest.raises(InvalidOffset):
        await store.read_parts(info.id, size + 1)
    with pytest.raises(StreamNotFound):
        await store.read_parts(uuid.uuid4())


async def test_read_at_end_is_empty(store: SQLStore) -> None:
    info = await store.create_stream()
    read = await store.read(info.id)
    assert (read.data, read.next_offset, read.size) == (b"", 0, 0)


async def test_bad_offsets_are_rejected(store: SQLStore) -> None:
    info = await store.create_stream()
    await store.append(info.id, b"abc", offset=0)
    with pytest.raises(InvalidOffset) as caught:
        await store.read(info.id, 4)
    assert caught.value.size == 3
    with pytest.raises(InvalidOffset):
        await store.read(info.id, -1)
    with pytest.raises(InvalidOffset):
        await store.append(info.id, b"x", offset=-1)


async def test_empty_append_is_rejected(store: SQLStore) -> None:
    info = await store.create_stream()
    with pytest.raises(InvalidInput):
        await store.append(info.id, b"", offset=0)
    with pytest.raises(InvalidInput):
        await store.append(info.id, "text", offset=0)  # type: ignore[arg-type]


async def test_stale_offset_is_a_conflict_and_stores_nothing(store: SQLStore) -> None:
    info = await store.create_stream()
    await store.append(info.id, b"first", offset=0)
    with pytest.raises(OffsetConflict) as caught:
        await store.append(info.id, b"second", offset=0)
    assert (caught.value.expected, caught.value.actual) == (0, 5)
    assert (await store.read(info.id)).data == b"first"


async def test_concurrent_appends_at_one_offset_exactly_one_wins(
    db_url: str, driver: Driver
) -> None:
    # Separate stores (separate pools and connections) so the appends truly race.
    stores = [create_store(db_url, driver, min_size=1, max_size=1) for _ in range(8)]
    for s in stores:
        await s.open()
    try:
        info = await stores[0].create_stream()
        await stores[0].append(info.id, b"base:", offset=0)
        payloads = [f"writer-{i}-".encode() * (i + 1) for i in range(len(stores))]
        results = await asyncio.gather(
            *(s.append(info.id, p, offset=5) for s, p in zip(stores, payloads, strict=True)),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if isinstance(r, int)]
        losers = [r for r in results if not isinstance(r, int)]
        assert len(winners) == 1, results
        assert all(isinstance(r, OffsetConflict) for r in losers), losers
        winner = payloads[winners[0]]
        assert results[winners[0]] == 5 + len(winner)
        read = await stores[0].read(info.id)
        assert read.data == b"base:" + winner
        assert read.size == 5 + len(winner)
    finally:
        for s in stores:
            await s.close()


async def test_concurrent_appends_on_one_store_exactly_one_wins(store: SQLStore) -> None:
    # One store (a pool of connections, or the memory store's one loop): the same rule.
    info = await store.create_stream()
    await store.append(info.id, b"base:", offset=0)
    payloads = [f"writer-{i}-".encode() for i in range(6)]
    results = await asyncio.gather(
        *(store.append(info.id, p, offset=5) for p in payloads), return_exceptions=True
    )
    winners = [i for i, r in enumerate(results) if isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(isinstance(r, OffsetConflict) for r in results if not isinstance(r, int))
    assert (await store.read(info.id)).data == b"base:" + payloads[winners[0]]


async def test_concurrent_claims_on_one_store_exactly_one_wins(store: SQLStore) -> None:
    info = await store.create_stream()
    results = await asyncio.gather(
        *(store.claim(info.id) for _ in range(5)), return_exceptions=True
    )
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1, results
    assert all(isinstance(r, InvalidTransition) for r in results if isinstance(r, BaseException))


async def test_multibyte_text_split_across_appends_is_byte_exact(store: SQLStore) -> None:
    text = "Grüße 👋🏽 — 你好，世界！ café ☕ 𝄞 end."
    data = text.encode()
    info = await store.create_stream()
    # Split at every few bytes, deliberately inside multi-byte characters.
    size = 0
    for start in range(0, len(data), 3):
        size = await store.append(info.id, data[start : start + 3], offset=size)
    assert size == len(data)
    read = await store.read(info.id)
    assert read.data == data
    assert read.data.decode() == text
    # Reading from any offset returns exactly the remaining bytes.
    for offset in (0, 1, 7, 8, 9, 10, len(data) - 1, len(data)):
        assert (await store.read(info.id, offset)).data == data[offset:]
    # Reading from a character boundary decodes cleanly.
    boundary = len("Grüße 👋🏽 — ".encode())
    assert (await store.read(info.id, boundary)).data.decode() == "你好，世界！ café ☕ 𝄞 end."


async def test_append_with_finish_closes_in_the_same_statement(store: SQLStore) -> None:
    info = await store.create_stream(status=S.STREAMING)
    size = await store.append(info.id, b"last words.", offset=0, finish=S.DONE)
    after = await store.get_stream(info.id)
    assert (after.status, after.closed, after.size) == (S.DONE, True, size)
    assert after.finished_at is not None
    with pytest.raises(StreamClosed) as caught:
        await store.append(info.id, b"more", offset=size)
    assert caught.value.status == "done"
    assert (await store.read(info.id)).data == b"last words."


async def test_append_with_finish_stores_the_reason(store: SQLStore) -> None:
    aborted = await store.create_stream(status=S.STREAMING)
    await store.append(aborted.id, b"partial", offset=0, finish=S.ABORTED, reason="stop")
    info = await store.get_stream(aborted.id)
    assert (info.status, info.abort_reason, info.error) == (S.ABORTED, "stop", None)
    failed = await store.create_stream(status=S.STREAMING)
    await store.append(failed.id, b"", offset=0, finish=S.ERROR, reason="boom")
    info = await store.get_stream(failed.id)
    assert (info.status, info.abort_reason, info.error) == (S.ERROR, None, "boom")


async def test_finish_without_data(store: SQLStore) -> None:
    info = await store.create_stream(status=S.STREAMING)
    await store.append(info.id, b"x", offset=0)
    assert await store.append(info.id, b"", offset=1, finish=S.DONE) == 1
    assert (await store.get_stream(info.id)).status is S.DONE
    with pytest.raises(InvalidInput):
        await store.append(info.id, b"", offset=1, finish=S.STREAMING)


async def test_claim_only_once(store: SQLStore) -> None:
    info = await store.create_stream()
    claimed = await store.claim(info.id)
    assert claimed.status is S.STREAMING
    assert claimed.heartbeat_at is not None
    with pytest.raises(InvalidTransition) as caught:
        await store.claim(info.id)
    assert caught.value.current == "streaming"


async def test_concurrent_claims_exactly_one_wins(db_url: str, driver: Driver) -> None:
    stores = [create_store(db_url, driver, min_size=1, max_size=1) for _ in range(6)]
    for s in stores:
        await s.open()
    try:
        info = await stores[0].create_stream()
        results = await asyncio.gather(*(s.claim(info.id) for s in stores), return_exceptions=True)
        assert sum(1 for r in results if not isinstance(r, BaseException)) == 1, results
        assert all(
            isinstance(r, InvalidTransition) for r in results if isinstance(r, BaseException)
        )
    finally:
        for s in stores:
            await s.close()


@pytest.mark.parametrize("final", [S.DONE, S.ERROR, S.TIMEOUT, S.ABORTED])
async def test_finished_streams_never_reopen(store: SQLStore, final: StreamStatus) -> None:
    info = await store.create_stream()
    await store.claim(info.id)
    done = await store.set_status(info.id, final, reason="why")
    assert done.status is final
    assert done.closed
    assert done.finished_at is not None
    for target in S:
        if target is final:
            continue
        with pytest.raises(InvalidTransition):
            await store.set_status(info.id, target)
    assert (await store.get_stream(info.id)).status is final


async def test_reasons_are_stored_where_they_belong(store: SQLStore) -> None:
    aborted = await store.create_stream()
    info = await store.set_status(aborted.id, S.ABORTED, reason="user pressed stop")
    assert (info.abort_reason, info.error) == ("user pressed stop", None)
    failed = await store.create_stream(status=S.STREAMING)
    info = await store.set_status(failed.id, S.ERROR, reason="model exploded")
    assert (info.abort_reason, info.error) == (None, "model exploded")


async def test_unknown_status_is_invalid_input(store: SQLStore) -> None:
    info = await store.create_stream()
    with pytest.raises(InvalidInput):
        await store.set_status(info.id, "paused")  # type: ignore[arg-type]


async def test_database_refuses_to_reopen_even_from_plain_sql(store: SQLStore, db_url: str) -> None:
    info = await store.create_stream()
    await store.set_status(info.id, S.DONE)
    conn = await asyncpg.connect(db_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE pts.streams SET status = 'streaming', closed = false WHERE id = $1", info.id
            )
    finally:
        await conn.close()


async def test_heartbeat(store: SQLStore) -> None:
    live = await store.create_stream(status=S.STREAMING)
    pending = await store.create_stream()
    alive = await store.heartbeat([live.id, pending.id, uuid.uuid4()])
    assert alive == {live.id}
    assert await store.heartbeat([]) == set()
    after = await store.get_stream(live.id)
    assert after.heartbeat_at is not None
    assert live.heartbeat_at is not None
    assert after.heartbeat_at > live.heartbeat_at


async def _age(db_url: str, stream_id: uuid.UUID, *, heartbeat: str, created: str = "0") -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "UPDATE pts.streams SET heartbeat_at = now() - $2::text::interval, "
            "created_at = now() - $3::text::interval WHERE id = $1",
            stream_id,
            heartbeat,
            created,
        )
    finally:
        await conn.close()


async def test_stale_is_judged_by_heartbeat_not_age(store: SQLStore, db_url: str) -> None:
    dead = await store.create_stream(status=S.STREAMING)
    healthy_old = await store.create_stream(status=S.STREAMING)
    await _age(db_url, dead.id, heartbeat="45 seconds")
    # A 40-minute generation that still heartbeats must not be touched.
    await _age(db_url, healthy_old.id, heartbeat="1 second", created="40 minutes")
    assert [s.id for s in await store.find_stale(30)] == [dead.id]
    swept = await store.timeout_stale(30)
    assert [s.id for s in swept] == [dead.id]
    after = await store.get_stream(dead.id)
    assert after.status is S.TIMEOUT
    assert after.closed
    assert after.error
    assert (await store.get_stream(healthy_old.id)).status is S.STREAMING
    assert await store.timeout_stale(30) == []


async def test_concurrent_sweepers_mark_each_stream_once(db_url: str, driver: Driver) -> None:
    stores = [create_store(db_url, driver, min_size=1, max_size=2) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        ids = [(await stores[0].create_stream(status=S.STREAMING)).id for _ in range(20)]
        for stream_id in ids:
            await _age(db_url, stream_id, heartbeat="1 hour")
        results = await asyncio.gather(*(s.timeout_stale(30, limit=7) for s in stores))
        swept = [info.id for batch in results for info in batch]
        assert len(swept) == len(set(swept))
        while batch := await stores[0].timeout_stale(30):
            swept += [info.id for info in batch]
        assert sorted(swept) == sorted(ids)
    finally:
        for s in stores:
            await s.close()


async def test_delete_removes_stream_and_chunks(store: SQLStore, db_url: str) -> None:
    info = await store.create_stream()
    await store.append(info.id, b"abc", offset=0)
    await store.delete_stream(info.id)
    with pytest.raises(StreamNotFound):
        await store.get_stream(info.id)
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pts.chunks") == 0
    finally:
        await conn.close()


async def test_stream_bodies_view(store: SQLStore, db_url: str) -> None:
    info = await store.create_stream()
    size = await store.append(info.id, b"Hallo, ", offset=0)
    await store.append(info.id, "wêreld 🌍.".encode(), offset=size)
    empty = await store.create_stream()
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT text, size, status FROM pts.stream_bodies WHERE id = $1", info.id
        )
        assert row is not None
        assert row["text"] == "Hallo, wêreld 🌍."
        assert row["size"] == len("Hallo, wêreld 🌍.".encode())
        assert row["status"] == "pending"
        assert (
            await conn.fetchval("SELECT text FROM pts.stream_bodies WHERE id = $1", empty.id) == ""
        )
    finally:
        await conn.close()


async def test_notifications_on_append_and_status_but_not_heartbeat(
    store: SQLStore, db_url: str
) -> None:
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    conn = await asyncpg.connect(db_url)

    def on_notify(_c: object, _pid: int, channel: str, payload: object) -> None:
        assert channel == "pts_v1"
        received.put_nowait(json.loads(str(payload)))

    await conn.add_listener("pts_v1", on_notify)
    try:
        info = await store.create_stream()
        assert await asyncio.wait_for(received.get(), 5) == {
            "id": str(info.id),
            "size": 0,
            "status": "pending",
            "closed": False,
        }
        await store.claim(info.id)
        assert (await asyncio.wait_for(received.get(), 5))["status"] == "streaming"
        await store.heartbeat([info.id])
        await store.append(info.id, "né".encode(), offset=0)
        # The heartbeat sent nothing: the next notification is the append.
        assert await asyncio.wait_for(received.get(), 5) == {
            "id": str(info.id),
            "size": 3,
            "status": "streaming",
            "closed": False,
        }
        await store.append(info.id, b"", offset=3, finish=S.DONE)
        assert await asyncio.wait_for(received.get(), 5) == {
            "id": str(info.id),
            "size": 3,
            "status": "done",
            "closed": True,
        }
        await store.delete_stream(info.id)
        assert (await asyncio.wait_for(received.get(), 5))["status"] == "deleted"
        assert received.empty()
    finally:
        await conn.close()


async def test_a_touching_lookup_returns_the_renewed_expiry(store: SQLStore, db_url: str) -> None:
    outcome, stream_id = await store.ds_create("ttl/1", content_type="text/plain", ttl_seconds=3600)
    assert outcome == "created"
    conn = await asyncpg.connect(db_url)
    try:  # as if an hour had nearly passed since the last access
        await conn.execute(
            "UPDATE pts.streams SET expires_at = now() + interval '1 minute' WHERE id = $1",
            stream_id,
        )
        stored = await conn.fetchval("SELECT expires_at FROM pts.streams WHERE id = $1", stream_id)
        plain = await store.ds_lookup("ttl/1")
        assert plain is not None
        assert plain.stream.expires_at == stored  # HEAD: not renewed
        touched = await store.ds_lookup("ttl/1", touch=True)
        assert touched is not None
        renewed = await conn.fetchval("SELECT expires_at FROM pts.streams WHERE id = $1", stream_id)
        assert renewed - stored > timedelta(minutes=30)
        assert touched.stream.expires_at == renewed  # the lookup reports what it stored
    finally:
        await conn.close()


# -- retention (issue 15): create_stream(ttl=...), collect_garbage, prune ------------


async def test_a_ttl_expires_the_stream_that_long_after_its_creation(store: SQLStore) -> None:
    info = await store.create_stream(ttl=90)
    assert info.expires_at is not None
    assert info.expires_at - info.created_at == timedelta(seconds=90)  # one clock, one now
    fractional = await store.create_stream(ttl=1.5, status=S.STREAMING)
    assert fractional.expires_at is not None
    assert fractional.expires_at - fractional.created_at == timedelta(seconds=1.5)
    assert (await store.get_stream(info.id)).expires_at == info.expires_at
    assert (await store.create_stream()).expires_at is None


@pytest.mark.parametrize(
    "ttl", [0, -1, 0.0, float("nan"), float("inf"), "60", True, 10**300, 10**12 * 86400]
)
async def test_a_bad_ttl_is_refused_and_creates_nothing(store: SQLStore, ttl: object) -> None:
    with pytest.raises(InvalidInput, match="ttl"):
        await store.create_stream(client_id="t", ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(StreamNotFound):
        await store.get_stream_by_client_id("t")


async def test_ttl_and_expires_at_are_exclusive(store: SQLStore) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(InvalidInput, match="not both"):
        await store.create_stream(ttl=60, expires_at=later)


async def test_an_expired_stream_is_collected_but_not_while_it_streams(store: SQLStore) -> None:
    idle = await store.create_stream(ttl=0.001)
    driven = await store.create_stream(ttl=0.001, status=S.STREAMING)
    size = await store.append(driven.id, "une réponse ".encode(), offset=0)

    async def idle_collected() -> bool:
        await store.collect_garbage()
        try:
            await store.get_stream(idle.id)
        except StreamNotFound:
            return True
        return False

    await until(idle_collected, "the expired pending stream is collected")
    # Expired too, but driven: its answer is never cut off by the collection.
    assert await store.collect_garbage() == 0
    size = await store.append(driven.id, "entière".encode(), offset=size, finish=S.DONE)
    assert (await store.read(driven.id)).data == "une réponse entière".encode()
    assert await store.collect_garbage() == 1  # finished: it goes at the next collection
    with pytest.raises(StreamNotFound):
        await store.get_stream(driven.id)


async def _finished(store: SQLStore, text: str, status: S = S.DONE) -> StreamInfo:
    info = await store.create_stream(status=S.STREAMING)
    await store.append(info.id, text.encode(), offset=0, finish=status)
    return await store.get_stream(info.id)


async def test_prune_deletes_the_streams_finished_before_the_cutoff_in_batches(
    store: SQLStore,
) -> None:
    old = [await _finished(store, f"vieux {i} é", status) for i, status in enumerate(FINISHED)]
    old.append(await _finished(store, "vieux aussi"))
    pending = await store.create_stream()
    driven = await store.create_stream(status=S.STREAMING)
    newer = await _finished(store, "récent")
    assert newer.finished_at is not None
    cutoff = newer.finished_at  # strictly before: `newer` itself stays
    assert await store.count_prunable(cutoff) == len(old) == 5
    assert [await store.prune(cutoff, limit=2) for _ in range(4)] == [2, 2, 1, 0]
    assert await store.count_prunable(cutoff) == 0
    for info in old:
        with pytest.raises(StreamNotFound):
            await store.get_stream(info.id)
    for info in (pending, driven, newer):
        assert (await store.get_stream(info.id)).status is info.status
    assert (await store.read(newer.id)).data == "récent".encode()


async def test_prune_takes_the_oldest_first(store: SQLStore) -> None:
    first = await _finished(store, "un")
    second = await _finished(store, "deux")
    third = await _finished(store, "trois")
    assert third.finished_at is not None
    assert await store.prune(third.finished_at, limit=1) == 1
    with pytest.raises(StreamNotFound):
        await store.get_stream(first.id)
    assert (await store.get_stream(second.id)).id == second.id


@pytest.mark.parametrize(
    ("finished_before", "limit"),
    [(datetime(2030, 1, 1), 10), (datetime.now(UTC), 0), (datetime.now(UTC), 2**31), ("x", 1)],
)
async def test_prune_refuses_bad_arguments(
    store: SQLStore, finished_before: object, limit: int
) -> None:
    await _finished(store, "gardé")
    with pytest.raises(InvalidInput):
        await store.prune(finished_before, limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.count_prunable(datetime(2030, 1, 1))  # naive: which time zone?
    assert await store.count_prunable(datetime.now(UTC) + timedelta(days=1)) == 1


async def test_prune_soft_deletes_a_source_that_a_live_fork_reads(
    store: SQLStore, db_url: str
) -> None:
    outcome, source = await store.ds_create(
        "retention/source", content_type="text/plain", closed=True, data=b"l'original "
    )
    assert outcome == "created"
    assert source is not None
    outcome, fork = await store.ds_create(
        "retention/fork", content_type="text/plain", source=source, fork_offset=11
    )
    assert outcome == "created"
    assert fork is not None
    await store.ds_append("retention/fork", b"et la suite", media_type="text/plain")
    cutoff = datetime.now(UTC) + timedelta(days=1)  # the source (closed) is finished; the fork not
    assert await store.prune(cutoff) == 1
    assert (await store.read(fork)).data == b"l'original et la suite"
    assert (await store.get_stream(source)).deleted_at is not None  # soft: its bytes stay
    assert await store.prune(cutoff) == 0  # and it is no candidate again
    assert await store.count_prunable(cutoff) == 0
    assert await store.ds_delete(fork) == "deleted"  # the last fork goes: so does the source
    with pytest.raises(StreamNotFound):
        await store.get_stream(source)


async def test_prune_skips_streams_another_transaction_holds(store: SQLStore, db_url: str) -> None:
    held, free = await _finished(store, "tenu"), await _finished(store, "libre")
    cutoff = datetime.now(UTC) + timedelta(days=1)
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM pts.streams WHERE id = $1 FOR UPDATE", held.id)
            # Not waited for: the batch takes what is free and ends.
            assert await asyncio.wait_for(store.prune(cutoff), 10) == 1
            assert await store.prune(cutoff) == 0
        assert await store.prune(cutoff) == 1
        for info in (held, free):
            with pytest.raises(StreamNotFound):
                await store.get_stream(info.id)
        assert await conn.fetchval("SELECT count(*) FROM pts.chunks") == 0
    finally:
        await conn.close()


# -- compaction ------------------------------------------------------------------


async def chunked_stream(store: SQLStore, pieces: list[bytes], finish: bool) -> uuid.UUID:
    info = await store.create_stream(status=S.STREAMING)
    offset = 0
    for piece in pieces:
        offset = await store.append(info.id, piece, offset=offset)
    if finish:
        await store.set_status(info.id, S.DONE)
    return info.id


async def test_compact_merges_a_finished_streams_rows_and_reads_stay_the_same(
    store: SQLStore,
) -> None:
    pieces = [f"{i}é-".encode() for i in range(12)]
    stream_id = await chunked_stream(store, pieces, finish=True)
    size = len(b"".join(pieces))
    before = [await store.read(stream_id, o, m) for o in range(size + 1) for m in (None, 1, 5)]
    assert await store.compact(stream_id) == len(pieces) - 1  # all in one 1 MiB row
    assert await store.compact(stream_id) == 0  # nothing left to merge
    assert [await store.read(stream_id, o, m) for o in range(size + 1) for m in (None, 1, 5)] == (
        before
    )


async def test_compact_leaves_unfinished_and_unknown_streams_alone(store: SQLStore) -> None:
    stream_id = await chunked_stream(store, [b"a", b"b", b"c"], finish=False)
    assert await store.compact(stream_id) == 0
    assert await store.compact(uuid.uuid4()) == 0
    assert await store.compact("not-a-uuid") == 0  # type: ignore[arg-type]
    read = await store.read(stream_id, 1, max_bytes=1)
    assert (read.data, read.at_boundary) == (b"b", True)


async def test_compact_rows_of_the_configured_size(store: SQLStore) -> None:
    store.compact_row_bytes = 4
    stream_id = await chunked_stream(store, [b"ab"] * 10, finish=True)  # starts 0, 2, ..., 18
    assert await store.compact(stream_id) == 5  # 10 rows become 5: [0, 4), [4, 8), ...
    store.compact_row_bytes = 0
    with pytest.raises(InvalidInput):
        await store.compact(stream_id)


async def test_compact_finished_compacts_each_finished_stream_once(store: SQLStore) -> None:
    finished = [await chunked_stream(store, [b"x", b"y"], finish=True) for _ in range(3)]
    await chunked_stream(store, [b"x", b"y"], finish=False)
    assert await store.compact_finished(limit=2) == 2
    assert await store.compact_finished(limit=2) == 1
    assert await store.compact_finished() == 0
    for stream_id in finished:
        assert await store.compact(stream_id) == 0  # already compact
        assert (await store.read(stream_id)).data == b"xy"
    with pytest.raises(InvalidInput):
        await store.compact_finished(limit=0)


async def test_concurrent_compactions_merge_each_stream_once(db_url: str, driver: Driver) -> None:
    stores = [create_store(db_url, driver) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        ids = [await chunked_stream(stores[0], [b"p"] * 5, finish=True) for _ in range(12)]
        twice = await asyncio.gather(*(s.compact(i) for i in ids for s in stores))
        assert sum(twice) == 12 * 4  # every stream's 4 rows went once
        more = [await chunked_stream(stores[0], [b"q"] * 3, finish=True) for _ in range(20)]
        counts: list[int] = []
        for _ in range(20):  # bounded; done once a round finds nothing
            batch = await asyncio.gather(*(s.compact_finished(limit=3) for s in stores))
            counts += batch
            if not any(batch):
                break
        assert sum(counts) == 20  # SKIP LOCKED: no stream compacted by both
        for stream_id in more:
            assert await stores[1].compact(stream_id) == 0
    finally:
        for s in stores:
            await s.close()

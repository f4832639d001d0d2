"""Compaction on real Postgres: finished streams' chunk rows merged, every read the same.

A merged row keeps where each original chunk began (``pts.chunks.boundaries``),
so a read (offset, max_bytes) returns exactly what it returned before, readers
that straddle a compaction lose and repeat nothing, forks whose fork point falls
inside a merged row see exactly their bytes, and JSON streams stay readable from
their message boundaries only. Run on both drivers; the property-based check of
the same rule is tests/integration/test_compaction_property.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
import pytest
from litestar import Litestar

from pts import PersistentTextStreaming, PTSPlugin
from pts.http.durable import wire
from pts.models import ReadResult, StreamStatus
from pts.plugin import allow_everything
from pts.settings import Driver
from pts.store import SQLStore, create_store
from pts.store.queries import queries
from tests.support.servers import serve_app
from tests.support.waiting import until

PAGES = (None, 1, 4, 9)
"""The max_bytes every offset is read with (None: to the end)."""


@pytest.fixture
async def sql_store(db_url: str, driver: Driver) -> AsyncIterator[SQLStore]:
    store = create_store(db_url, driver)
    await store.open()
    store.compact_row_bytes = 16  # small rows: a few bytes of text make several merged rows
    try:
        yield store
    finally:
        await store.close()


async def ds_stream(
    store: SQLStore,
    path: str,
    pieces: list[bytes],
    *,
    content_type: str = "text/plain",
    close: bool = True,
    source: uuid.UUID | None = None,
    fork_offset: int | None = None,
    sub_offset: int | None = None,
    prefix: bytes = b"",
) -> uuid.UUID:
    """A Durable Streams stream at ``path``: one chunk row per piece (a fork's prefix first)."""
    _, stream_id = await store.ds_create(
        path,
        content_type=content_type,
        source=source,
        fork_offset=fork_offset,
        fork_sub_offset=sub_offset,
        prefix=prefix,
    )
    assert stream_id is not None
    for piece in pieces:
        await store.ds_append(path, piece, media_type=content_type)
    if close:
        await store.ds_append(path, b"", media_type=content_type, close=True)
    return stream_id


async def every_read(store: SQLStore, stream_id: uuid.UUID) -> list[ReadResult]:
    size = (await store.get_stream(stream_id)).size
    return [await store.read(stream_id, o, m) for o in range(size + 1) for m in PAGES]


async def row_count(conn: asyncpg.Connection, stream_id: uuid.UUID) -> int:
    count = await conn.fetchval("SELECT count(*) FROM pts.chunks WHERE stream_id = $1", stream_id)
    assert isinstance(count, int)
    return count


async def body(conn: asyncpg.Connection, stream_id: uuid.UUID) -> bytes:
    found = await conn.fetchval("SELECT body FROM pts.stream_bodies WHERE id = $1", stream_id)
    assert isinstance(found, bytes)
    return found


async def paged(
    store: SQLStore, stream_id: uuid.UUID, page: int, between: Callable[[], Awaitable[None]]
) -> list[tuple[int, bytes]]:
    """The stream read to its end in pages of ``page`` bytes, as (offset, data);
    ``between()`` runs after the first page."""
    first = await store.read(stream_id, 0, max_bytes=page)
    await between()
    pages, position = [(0, first.data)], first.next_offset
    while position < first.size:
        read = await store.read(stream_id, position, max_bytes=page)
        assert read.data, "a page past the first came back empty"
        pages.append((position, read.data))
        position = read.next_offset
    return pages


async def nothing() -> None:
    """Between two pages: no compaction (the pages to compare with)."""


PIECES = [f"{i:02d}:{'x' * (i % 5)};".encode() for i in range(30)]


async def test_a_finished_1000_flush_stream_becomes_one_row(db_url: str, driver: Driver) -> None:
    store = create_store(db_url, driver)  # the default row size: 1 MiB
    await store.open()
    conn = await asyncpg.connect(db_url)
    try:
        small = await store.create_stream(status=StreamStatus.STREAMING)
        big = await store.create_stream(status=StreamStatus.STREAMING)
        for stream, size in ((small, 100), (big, 3000)):
            offset = 0
            for i in range(1000):
                offset = await store.append(stream.id, bytes([65 + i % 26]) * size, offset=offset)
            await store.set_status(stream.id, StreamStatus.DONE)
        before = await body(conn, small.id), await body(conn, big.id)
        assert await store.compact(small.id) == 999
        assert await row_count(conn, small.id) == 1
        # 3,000,000 bytes: ceil(size / 1 MiB) rows.
        assert await store.compact(big.id) == 997
        assert await row_count(conn, big.id) == 3
        assert (await body(conn, small.id), await body(conn, big.id)) == before
        assert await store.compact(small.id) == 0  # nothing left to merge
        whole = await store.read(big.id)
        assert whole.data == before[1]
        assert whole.next_offset == whole.size == 3_000_000
    finally:
        await conn.close()
        await store.close()


async def test_an_unfinished_stream_is_not_compacted(
    sql_store: SQLStore, conn: asyncpg.Connection
) -> None:
    stream_id = await ds_stream(sql_store, "open", PIECES, close=False)
    assert await sql_store.compact(stream_id) == 0
    assert await row_count(conn, stream_id) == len(PIECES)
    marked = await conn.fetchval("SELECT compacted_at FROM pts.streams WHERE id = $1", stream_id)
    assert marked is None
    assert await sql_store.compact(uuid.uuid4()) == 0  # no such stream: nothing to do


async def test_every_read_is_the_same_after_compaction(
    sql_store: SQLStore, conn: asyncpg.Connection
) -> None:
    stream_id = await ds_stream(sql_store, "text", PIECES)
    before, text = await every_read(sql_store, stream_id), await body(conn, stream_id)
    removed = await sql_store.compact(stream_id)
    assert removed > 0
    assert await row_count(conn, stream_id) == len(PIECES) - removed
    assert await every_read(sql_store, stream_id) == before
    assert await body(conn, stream_id) == text == b"".join(PIECES)


async def test_a_paged_catch_up_across_a_compaction_loses_and_repeats_nothing(
    sql_store: SQLStore,
) -> None:
    for page in (1, 5, 13, 40):
        stream_id = await ds_stream(sql_store, f"paged-{page}", PIECES)

        async def compact(stream_id: uuid.UUID = stream_id) -> None:
            assert await sql_store.compact(stream_id) > 0

        pages = await paged(sql_store, stream_id, page, compact)
        assert b"".join(data for _, data in pages) == b"".join(PIECES), page
        # The same pages as before compaction: each ends where an appended chunk ended.
        twin = await ds_stream(sql_store, f"twin-{page}", PIECES)
        assert await paged(sql_store, twin, page, nothing) == pages


async def test_a_read_in_flight_keeps_its_rows_and_does_not_hold_compaction_up(
    sql_store: SQLStore, conn: asyncpg.Connection
) -> None:
    stream_id = await ds_stream(sql_store, "inflight", PIECES)
    async with conn.transaction():
        # A catch-up statement that has sent some of its rows when compaction commits.
        cursor = await conn.cursor(queries()["read"], stream_id, 0, None)
        first = await cursor.fetch(3)
        removed = await asyncio.wait_for(sql_store.compact(stream_id), 10)
        rest = await cursor.fetch(len(PIECES))
    assert removed > 0
    assert len(first) + len(rest) == len(PIECES)  # the statement's snapshot: the old rows
    assert b"".join(r["data"] for r in first + rest) == b"".join(PIECES)
    assert (await sql_store.read(stream_id)).data == b"".join(PIECES)


async def forks(store: SQLStore, prefix: str = "") -> dict[str, uuid.UUID]:
    """A source and forks of it: at a chunk boundary that stays a row boundary, at one
    that ends up inside a merged row, with a sub-offset, while the source still
    grows, and forks of forks (at the fork point and inside the fork's own rows)."""
    source = await ds_stream(store, prefix + "src", PIECES[:20], close=False)
    # Chunks start at 0, 4, 9, 15, 22, 30, 34, ...; in 16-byte windows the rows
    # become [0, 22), [22, 34), ...: 22 stays a row boundary, 4 and 30 end up inside.
    ids = {"src": source}
    ids["inside"] = await ds_stream(
        store, prefix + "inside", [b"fork-a", b"fork-b", b"fork-c"], source=source, fork_offset=4
    )
    ids["at-row"] = await ds_stream(
        store, prefix + "at-row", [b"own-1", b"own-2"], source=source, fork_offset=22
    )
    ids["sub"] = await ds_stream(
        store,
        prefix + "sub",
        [b"after-prefix"],
        source=source,
        fork_offset=9,
        sub_offset=3,
        prefix=PIECES[2][:3],
    )
    ids["empty"] = await ds_stream(store, prefix + "empty", [], source=source, fork_offset=30)
    for piece in PIECES[20:]:  # the source grows past its forks
        await store.ds_append(prefix + "src", piece, media_type="text/plain")
    await store.ds_append(prefix + "src", b"", media_type="text/plain", close=True)
    # The fork at 4 holds its own chunks at 4, 10 and 16.
    ids["fork-of-fork"] = await ds_stream(
        store, prefix + "fof", [b"deep-1", b"deep-2"], source=ids["inside"], fork_offset=16
    )
    ids["fork-at-fork"] = await ds_stream(
        store, prefix + "faf", [b"deeper"], source=ids["inside"], fork_offset=4
    )
    # Below its parent's fork point: its bytes are the source's up to 4, no further.
    ids["below"] = await ds_stream(
        store, prefix + "below", [b"low"], source=ids["sub"], fork_offset=4
    )
    ids["fork-of-sub"] = await ds_stream(
        store, prefix + "fos", [b"z"], source=ids["sub"], fork_offset=12
    )
    return ids


async def test_forks_read_the_same_after_their_sources_are_compacted(
    sql_store: SQLStore, conn: asyncpg.Connection
) -> None:
    ids = await forks(sql_store)
    before = {name: await every_read(sql_store, i) for name, i in ids.items()}
    bodies = {name: await body(conn, i) for name, i in ids.items()}
    removed = 0
    for stream_id in ids.values():  # the source first: forks read it merged, then their own
        removed += await sql_store.compact(stream_id)
        for name, i in ids.items():
            assert await every_read(sql_store, i) == before[name], name
            assert await body(conn, i) == bodies[name], name
    assert removed > 0
    # The fork at 4 reads its source's first 4 bytes, cut out of a merged row.
    assert (await sql_store.read(ids["inside"])).data == b"".join(PIECES)[
        :4
    ] + b"fork-afork-bfork-c"
    assert await row_count(conn, ids["src"]) < len(PIECES)
    assert (await sql_store.read(ids["below"])).data == PIECES[0] + b"low"


async def test_a_forks_paged_read_across_compactions_loses_and_repeats_nothing(
    sql_store: SQLStore, conn: asyncpg.Connection
) -> None:
    names = ("inside", "fork-of-fork", "sub", "fork-of-sub", "below")
    for run, (page, name) in enumerate(itertools.product((1, 4, 10), names)):
        ids = await forks(sql_store, f"r{run}-")  # a fresh lineage, not yet compacted
        before = await paged(sql_store, ids[name], page, nothing)

        # Between the fork's first page and the rest, its whole lineage is compacted.
        async def compact_all(ids: dict[str, uuid.UUID] = ids) -> None:
            removed = [await sql_store.compact(stream_id) for stream_id in ids.values()]
            assert sum(removed) > 0

        pages = await paged(sql_store, ids[name], page, compact_all)
        assert b"".join(data for _, data in pages) == await body(conn, ids[name]), name
        assert pages == before, (page, name)


async def test_json_streams_keep_their_message_boundaries(
    sql_store: SQLStore, conn: asyncpg.Connection
) -> None:
    messages = [f'{{"n":{i},"pad":"{"p" * (i % 4)}"}},'.encode() for i in range(20)]
    stream_id = await ds_stream(sql_store, "json", messages, content_type="application/json")
    boundaries, position = [], 0
    for message in messages:
        boundaries.append(position)
        position += len(message)
    before = await every_read(sql_store, stream_id)
    sql_store.compact_row_bytes = 64  # a few messages a row
    assert await sql_store.compact(stream_id) > 0
    assert await row_count(conn, stream_id) < len(messages)
    assert await every_read(sql_store, stream_id) == before
    for offset in range(position + 1):
        read = await sql_store.read(stream_id, offset, max_bytes=1)
        assert read.at_boundary is (offset in boundaries or offset == position), offset
    # A page ends where a message ends: the wire's JSON array is whole.
    for offset in boundaries:
        page = await sql_store.read(stream_id, offset, max_bytes=20)
        assert page.next_offset in [*boundaries, position]


async def test_the_sweeper_compacts_finished_streams_unasked(
    db_url: str, driver: Driver, conn: asyncpg.Connection
) -> None:
    async with PersistentTextStreaming(dsn=db_url, driver=driver, sweep_interval=0.05) as pts:
        done = await pts.store.create_stream(status=StreamStatus.STREAMING)
        live = await pts.store.create_stream(status=StreamStatus.STREAMING)
        offset = 0
        for piece in PIECES:
            offset = await pts.store.append(done.id, piece, offset=offset)
            await pts.store.append(live.id, piece, offset=offset - len(piece))
        await pts.store.set_status(done.id, StreamStatus.DONE)

        async def compacted() -> bool:
            return await row_count(conn, done.id) == 1

        await until(compacted, "the finished stream is one row")
        assert (await pts.store.read(done.id)).data == b"".join(PIECES)
        # The same sweep passed the live stream over: it keeps its rows.
        assert await row_count(conn, live.id) == len(PIECES)


async def test_the_protocol_reads_a_compacted_json_stream_as_before(
    db_url: str, driver: Driver
) -> None:
    pts = PersistentTextStreaming(dsn=db_url, driver=driver, sweeper=False)
    app = Litestar(plugins=[PTSPlugin(pts, authorize=allow_everything)])
    json_type = {"content-type": "application/json"}
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (await client.put("/v1/stream/j", headers=json_type)).status_code == 201
        offsets = [wire.format_offset(0)]
        for i in range(12):
            sent = await client.post("/v1/stream/j", content=f'[{{"n":{i}}}]', headers=json_type)
            offsets.append(sent.headers["stream-next-offset"])
        await client.post("/v1/stream/j", headers={**json_type, "stream-closed": "true"})

        async def answers() -> list[tuple[int, bytes, str | None]]:
            out = []
            for offset in offsets:
                got = await client.get("/v1/stream/j", params={"offset": offset})
                out.append((got.status_code, got.content, got.headers.get("stream-next-offset")))
            return out

        before = await answers()
        stream = await pts.store.get_stream_by_path("j")
        pts.store.compact_row_bytes = 32  # a few messages a row: boundaries fall inside rows
        assert await pts.store.compact(stream.id) > 0
        assert await answers() == before
        assert before[0][1] == json.dumps([{"n": i} for i in range(12)]).replace(" ", "").encode()
        third = wire.parse_offset(offsets[3])
        assert isinstance(third, int)
        inside = wire.format_offset(third + 2)
        assert (await client.get("/v1/stream/j", params={"offset": inside})).status_code == 400
        # A fork from an offset inside a merged row, with a sub-offset: one message of the next.
        fork = await client.put(
            "/v1/stream/jf",
            headers={
                **json_type,
                "stream-forked-from": "/v1/stream/j",
                "stream-fork-offset": offsets[5],
                "stream-fork-sub-offset": "1",
            },
        )
        assert fork.status_code == 201, fork.text
        read = await client.get("/v1/stream/jf", params={"offset": "-1"})
        assert read.json() == [{"n": i} for i in range(6)]

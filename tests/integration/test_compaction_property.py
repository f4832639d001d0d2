"""Property: random chunkings, forks and compaction leave every read as it was.

Hypothesis builds a source stream from random chunks, forks of it and of its
forks (at chunk boundaries, at any offset, with sub-offset prefixes, while the
parent still grows), closes them all, and compacts them in a random order at a
random row size. Every read sampled (stream, offset, max_bytes) must equal the
same read before compaction, whole bodies included, and match a model of the
bytes built in Python.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pts.models import ReadResult
from pts.store import SQLStore, create_store

MEDIA = "text/plain"
EXAMPLES = 25


@dataclass
class Model:
    """What a stream should hold, built alongside it."""

    path: str
    stream_id: uuid.UUID
    data: bytes = b""
    starts: list[int] = field(default_factory=list)  # where each of its own chunks begins


async def append(store: SQLStore, stream: Model, piece: bytes) -> None:
    start = len(stream.data)
    await store.ds_append(stream.path, piece, media_type=MEDIA)
    stream.starts.append(start)
    stream.data += piece


async def build(store: SQLStore, data: st.DataObject, run: int) -> list[Model]:
    pieces = st.lists(st.binary(min_size=1, max_size=9), max_size=6)
    streams: list[Model] = []
    _, source_id = await store.ds_create(f"p{run}/0", content_type=MEDIA)
    assert source_id is not None
    streams.append(Model(f"p{run}/0", source_id))
    for piece in data.draw(st.lists(st.binary(min_size=1, max_size=9), min_size=1, max_size=15)):
        await append(store, streams[0], piece)
    for n in range(1, data.draw(st.integers(0, 4)) + 1):
        parent = streams[data.draw(st.integers(0, len(streams) - 1))]
        size = len(parent.data)
        points = sorted({*parent.starts, size})
        if data.draw(st.booleans()):
            point = data.draw(st.sampled_from(points))  # an offset the stream gave
        else:
            point = data.draw(st.integers(0, size))  # any offset (the store allows it)
        prefix = b""
        if point < size and data.draw(st.booleans()):
            unit = (await store.read(parent.stream_id, point, max_bytes=1)).data
            prefix = unit[: data.draw(st.integers(1, len(unit)))]
        path = f"p{run}/{n}"
        _, fork_id = await store.ds_create(
            path,
            content_type=MEDIA,
            source=parent.stream_id,
            fork_offset=point,
            fork_sub_offset=len(prefix),
            prefix=prefix,
        )
        assert fork_id is not None
        fork = Model(path, fork_id, parent.data[:point] + prefix, [point] if prefix else [])
        streams.append(fork)
        for piece in data.draw(pieces):
            await append(store, fork, piece)
    for stream in streams:  # parents grow past their forks, then everything closes
        for piece in data.draw(pieces):
            await append(store, stream, piece)
        await store.ds_append(stream.path, b"", media_type=MEDIA, close=True)
    return streams


async def sample_reads(
    store: SQLStore, streams: list[Model], asks: list[tuple[int, int, int | None]]
) -> list[ReadResult]:
    reads = []
    for which, at, max_bytes in asks:
        stream = streams[which % len(streams)]
        offset = at % (len(stream.data) + 1)
        reads.append(await store.read(stream.stream_id, offset, max_bytes))
    for stream in streams:
        reads.append(await store.read(stream.stream_id))
        for start in stream.starts:
            reads.append(await store.read(stream.stream_id, start, max_bytes=1))
    return reads


async def bodies(conn: asyncpg.Connection, streams: list[Model]) -> list[bytes]:
    ids = [s.stream_id for s in streams]
    rows = await conn.fetch("SELECT id, body FROM pts.stream_bodies WHERE id = ANY($1)", ids)
    found = {r["id"]: r["body"] for r in rows}
    return [found[i] for i in ids]


async def check(store: SQLStore, conn: asyncpg.Connection, data: st.DataObject, run: int) -> None:
    streams = await build(store, data, run)
    asks = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, 10),
                st.integers(0, 200),
                st.none() | st.integers(1, 30),
            ),
            min_size=10,
            max_size=40,
        )
    )
    before = await sample_reads(store, streams, asks)
    before_bodies = await bodies(conn, streams)
    assert before_bodies == [s.data for s in streams]
    for stream in streams:
        assert (await store.read(stream.stream_id)).data == stream.data
    store.compact_row_bytes = data.draw(st.integers(1, 40))
    for stream in data.draw(st.permutations(streams)):
        await store.compact(stream.stream_id)
    assert await sample_reads(store, streams, asks) == before
    assert await bodies(conn, streams) == before_bodies


@pytest.mark.timeout(600)  # many examples, each a few dozen statements
def test_every_read_is_the_same_after_compaction(db_url: str) -> None:
    loop = asyncio.new_event_loop()
    store = create_store(db_url, "asyncpg")
    conn = loop.run_until_complete(asyncpg.connect(db_url))
    loop.run_until_complete(store.open())
    runs = itertools.count()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.data())
    def property_holds(data: st.DataObject) -> None:
        loop.run_until_complete(check(store, conn, data, next(runs)))

    try:
        property_holds()
    finally:
        loop.run_until_complete(conn.close())
        loop.run_until_complete(store.close())
        loop.close()

"""An append's update of its stream's row is a HOT update (migration 0007).

Postgres updates a row in place of an index entry (a heap-only tuple) only when
no index covers a column the update changes. An append changes the stream's
``size`` and ``updated_at``; until migration 0007 the sweeper's index of pending
streams was on ``updated_at``, so every append wrote a new entry into each of
the table's indexes. Counted in the appending transaction itself
(``pg_stat_xact_user_tables``), so nothing waits for the statistics to settle.

The sweeper's pending timeout now finds streams through ``created_at``; it
still decides by ``updated_at``, as before.
"""

from __future__ import annotations

import asyncpg
import pytest

from pts.models import StreamStatus as S
from pts.store import SQLStore

pytestmark = pytest.mark.postgres_only(reason="Postgres's own update statistics")

APPEND = """
    SELECT outcome FROM pts.ds_append_v2($1::text, $2::bytea, 'text/plain', false,
                                         NULL, NULL, NULL, NULL, NULL)
"""
APPEND_BATCH = """
    SELECT outcome FROM pts.ds_append_batch_v1($1::text[], $2::bytea[], $3::text[],
        $4::boolean[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], NULL, false)
"""
UPDATES = """
    SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables
     WHERE relid = 'pts.streams'::regclass
"""


async def create(conn: asyncpg.Connection, path: str) -> None:
    outcome = await conn.fetchval(
        "SELECT outcome FROM pts.ds_create_v1($1, 'text/plain', NULL, NULL, false, ''::bytea,"
        " NULL, NULL, NULL, ''::bytea)",
        path,
    )
    assert outcome == "created"


async def test_protocol_appends_update_their_stream_rows_in_place(
    conn: asyncpg.Connection,
) -> None:
    await create(conn, "hot/one")
    async with conn.transaction():
        for n in range(3):
            assert await conn.fetchval(APPEND, "hot/one", b"chunk %d. " % n) == "appended"
        counts = await conn.fetchrow(UPDATES)
    assert counts is not None
    assert (counts["n_tup_upd"], counts["n_tup_hot_upd"]) == (3, 3)


async def test_a_batch_of_appends_updates_every_stream_row_in_place(
    conn: asyncpg.Connection,
) -> None:
    paths = ["hot/a", "hot/b", "hot/a", "hot/c"]
    for path in sorted(set(paths)):
        await create(conn, path)
    n = len(paths)
    async with conn.transaction():
        outcomes = await conn.fetch(
            APPEND_BATCH,
            paths,
            [b"bytes"] * n,
            ["text/plain"] * n,
            [False] * n,
            [None] * n,
            [None] * n,
            [None] * n,
            [None] * n,
        )
        counts = await conn.fetchrow(UPDATES)
    assert counts is not None
    assert [row["outcome"] for row in outcomes] == ["appended"] * n
    assert (counts["n_tup_upd"], counts["n_tup_hot_upd"]) == (n, n)


async def test_no_index_covers_a_column_an_append_changes(conn: asyncpg.Connection) -> None:
    # Keys, expressions and predicates alike: any of them stops a HOT update.
    covering = await conn.fetch(
        """
        SELECT i.indexrelid::regclass::text AS index, a.attname
          FROM pg_index i
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum > 0
         WHERE i.indrelid = 'pts.streams'::regclass
           AND a.attname IN ('size', 'updated_at')
           AND (a.attnum = ANY (i.indkey::int2[])
                OR pg_get_expr(i.indexprs, i.indrelid) ~ ('\\m' || a.attname || '\\M')
                OR pg_get_expr(i.indpred, i.indrelid) ~ ('\\m' || a.attname || '\\M'))
        """
    )
    assert [tuple(row) for row in covering] == []


async def test_the_pending_timeout_still_decides_by_the_last_change(
    store: SQLStore, conn: asyncpg.Connection
) -> None:
    old = await store.create_stream()
    touched = await store.create_stream()
    # Both made an hour ago; one of them changed a moment ago.
    await conn.execute(
        "UPDATE pts.streams SET created_at = now() - interval '1 hour',"
        " updated_at = now() - interval '1 hour' WHERE id = ANY($1::uuid[])",
        [old.id, touched.id],
    )
    await conn.execute("UPDATE pts.streams SET updated_at = now() WHERE id = $1", touched.id)
    swept = await store.timeout_pending(600)
    assert [s.id for s in swept] == [old.id]
    assert (await store.get_stream(touched.id)).status is S.PENDING
    assert (await store.get_stream(old.id)).status is S.TIMEOUT

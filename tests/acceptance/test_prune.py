"""Acceptance: ``pts prune`` in a subprocess, on a real database, while pts serves.

The last test is the issue's: 10,000 finished streams pruned in batches while a
stream is driven (in this process) and watched over SSE through a ``pts serve``
process, and the live answer loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import asyncpg
import httpx
import pytest
from litestar import Litestar

from pts import Append, PersistentTextStreaming, StreamStatus
from pts.flush import FlushPolicy
from tests.integration.test_driving import Harness, make_app
from tests.support.postgres import DatabaseFactory
from tests.support.servers import run_pts_serve, serve_app
from tests.support.sse import Event, events
from tests.support.waiting import until

GUARD = 120.0
"""Seconds a `pts prune` run may take here before the test is declared hung."""


def run_prune(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pts.cli", "prune", "--dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )


async def insert_finished(url: str, count: int, *, age: str) -> None:
    """``count`` finished streams (every final status in turn), each with one chunk of
    text, that finished ``age`` ago (an interval: '8 days'), in one statement."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            WITH new AS (
                SELECT gen_random_uuid() AS id, i, convert_to('réponse ' || i, 'UTF8') AS data
                  FROM generate_series(1, $1::int) AS i
            ), made AS (
                INSERT INTO pts.streams (id, status, closed, size, created_at, updated_at,
                                         finished_at)
                SELECT id, (ARRAY['done', 'error', 'timeout', 'aborted'])[1 + i % 4], true,
                       octet_length(data),
                       now() - $2::text::interval - interval '1 minute',
                       now() - $2::text::interval,
                       now() - $2::text::interval - i * interval '1 millisecond'
                  FROM new
            )
            INSERT INTO pts.chunks (stream_id, start_offset, data) SELECT id, 0, data FROM new
            """,
            count,
            age,
        )
    finally:
        await conn.close()


async def count_streams(url: str) -> tuple[int, int]:
    """(streams, chunk rows) in the database."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM pts.streams) AS streams,"
            " (SELECT count(*) FROM pts.chunks) AS chunks"
        )
        assert row is not None
        return row["streams"], row["chunks"]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        ("7", "is not a duration"),
        ("7w", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("-3d", "is not a duration"),
        ("7 d", "is not a duration"),
        ("", "is not a duration"),
        ("0s", "must be more than 0"),
        ("999999999d", "before year 1"),
    ],
)
def test_a_bad_duration_is_a_clear_error(db_url: str, duration: str, message: str) -> None:
    result = run_prune("--finished-before", duration, dsn=db_url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "--finished-before" in result.stderr
    assert "Traceback" not in result.stderr


async def test_dry_run_counts_and_deletes_nothing(db_url: str) -> None:
    await insert_finished(db_url, 5, age="8 days")
    await insert_finished(db_url, 2, age="1 day")
    result = await asyncio.to_thread(run_prune, "--finished-before", "7d", "--dry-run", dsn=db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dry run: would delete 5 stream(s) finished before ")
    assert await count_streams(db_url) == (7, 7)


async def test_prune_deletes_in_batches_with_a_line_per_batch(db_url: str) -> None:
    await insert_finished(db_url, 25, age="2 hours")
    await insert_finished(db_url, 3, age="10 minutes")
    result = await asyncio.to_thread(
        run_prune, "--finished-before", "90m", "--batch-size", "10", dsn=db_url
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["deleted 10 (total 10)", "deleted 10 (total 20)", "deleted 5 (total 25)"]
    assert lines[3].startswith("pruned 25 stream(s) finished before ")
    assert len(lines) == 4
    assert await count_streams(db_url) == (3, 3)
    again = await asyncio.to_thread(run_prune, "--finished-before", "90m", dsn=db_url)
    assert again.stdout.startswith("pruned 0 stream(s)")


def test_prune_on_a_database_without_the_schema_says_what_to_run(
    databases: DatabaseFactory,
) -> None:
    url = databases.create_empty()
    try:
        result = run_prune("--finished-before", "7d", dsn=url)
    finally:
        databases.drop(url)
    assert result.returncode == 1
    assert "pts migrate" in result.stderr
    assert "Traceback" not in result.stderr


PRUNED = 10_000


@pytest.mark.timeout(300)
async def test_prune_10000_streams_while_a_stream_is_driven_and_watched(
    db_url: str,
) -> None:
    await insert_finished(db_url, PRUNED, age="8 days")
    pts = PersistentTextStreaming(dsn=db_url, flush=FlushPolicy(max_delay=0.01), sweeper=False)
    ref: list[Harness] = []
    app: Litestar = make_app(pts, ref)
    pruned = asyncio.Event()
    tokens: list[str] = []

    async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
        # Bounded: on until the prune is over, then a last stretch (at most 20,000 tokens).
        after = 0
        for i in range(20_000):
            token = f"mot {i} é🌍 "
            tokens.append(token)
            await append(token)
            await asyncio.sleep(0.002)
            after += pruned.is_set()
            if after >= 50:
                return

    token = "test-admin-token"
    auth = {"Authorization": f"Bearer {token}"}
    async with serve_app(app) as base_url:
        harness = Harness(pts, base_url)
        ref.append(harness)
        harness.generate = generate
        stream_id = await harness.new_stream()
        with run_pts_serve(db_url, env={**os.environ, "PTS_ADMIN_TOKEN": token}) as watcher:
            async with httpx.AsyncClient(base_url=watcher.url, timeout=60) as client:
                watched: list[Event] = []

                async def watch() -> None:
                    async for item in events(client, f"/streams/{stream_id}/events", auth):
                        if isinstance(item, Event):
                            watched.append(item)

                watching = asyncio.create_task(watch())
                driving = asyncio.create_task(
                    harness.client.post(harness.drive_url(stream_id), timeout=GUARD)
                )
                await until(lambda: len(watched) >= 3, "the subscriber sees the answer begin")
                size_before = (await pts.get_stream(stream_id)).size
                result = await asyncio.to_thread(
                    run_prune, "--finished-before", "7d", "--batch-size", "1000", dsn=db_url
                )
                size_after = (await pts.get_stream(stream_id)).size
                pruned.set()
                driven = (await asyncio.wait_for(driving, GUARD)).text
                await asyncio.wait_for(watching, GUARD)
        await harness.client.aclose()
        body = await pts.get_stream_body(stream_id)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"deleted 1000 (total {n})" for n in range(1000, PRUNED + 1, 1000)]
    assert lines[-1].startswith(f"pruned {PRUNED} stream(s) finished before ")
    assert size_after > size_before, "the answer did not grow while the prune ran"
    assert (await count_streams(db_url))[0] == 1  # only the live answer is left
    assert body.status is StreamStatus.DONE
    assert body.text == "".join(tokens)
    assert driven == body.text
    text = "".join(e.data for e in watched if e.event == "text")
    assert text.encode() == body.text.encode()  # byte-exact
    final = json.loads(watched[-1].data)
    assert watched[-1].event == "status"
    assert final["status"] == "done"
    assert final["size"] == len(body.text.encode())

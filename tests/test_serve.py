"""``pts serve`` in a subprocess, over real HTTP: several workers, one database, clean stops."""

from __future__ import annotations

import asyncio
import signal
import uuid

import httpx
import pytest

from tests.server import ServeProcess, run_pts_serve

TOKEN = "serve-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def wait_until_refused(url: str, guard: float = 10.0) -> None:
    """Return once nothing accepts connections at ``url`` (a hang guard, not a speed check)."""
    async with asyncio.timeout(guard), httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        while True:
            try:
                await client.get("/healthz")
            except httpx.ConnectError:
                return
            await asyncio.sleep(0.05)


async def assert_refused(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")


async def stop_with_sigterm(server: ServeProcess, guard: float = 15.0) -> int:
    """SIGTERM ``pts serve``; its exit code (TimeoutExpired if it does not stop)."""
    server.process.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(server.process.wait, guard)


@pytest.mark.timeout(90)
async def test_two_workers_serve_one_database_and_stop_on_sigterm(db_url: str) -> None:
    with run_pts_serve(db_url, "--workers", "2", env={"PTS_ADMIN_TOKEN": TOKEN}) as server:
        assert f"pts serving on {server.url}" in server.output()
        assert "Started parent process" in server.output()  # uvicorn's multi-worker supervisor

        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
            health = await client.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"ok": True})

            created = await client.post("/streams", json={"client_id": "served"})
            assert created.status_code == 201, created.text
            stream_id = created.json()["id"]
            uuid.UUID(stream_id)

            assert (await client.get(f"/streams/{uuid.uuid4()}")).status_code == 404
            assert (await client.post("/streams", headers={"authorization": ""})).status_code == 401

        # Fresh connections, so that both workers get a chance to answer.
        for _ in range(6):
            async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as fresh:
                got = await fresh.get(f"/streams/{stream_id}")
                assert got.status_code == 200, got.text
                assert (got.json()["id"], got.json()["status"]) == (stream_id, "pending")

        assert await stop_with_sigterm(server) == 0
        # Each worker ran the app's shutdown (which closes pts) before exiting.
        assert server.output().count("Application shutdown complete.") == 2
        # The supervisor joined its workers before exiting: the port is free now.
        await assert_refused(server.url)


@pytest.mark.timeout(90)
async def test_single_worker_stops_on_sigterm(db_url: str) -> None:
    with run_pts_serve(db_url, env={"PTS_ADMIN_TOKEN": ""}) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).json() == {"ok": True}
            # No PTS_ADMIN_TOKEN for this server: streams are private to everyone.
            assert (await client.post("/streams", headers=AUTH)).status_code == 401
        # A single uvicorn server re-raises the signal once it has shut down gracefully.
        assert await stop_with_sigterm(server) in (0, -signal.SIGTERM)
        assert "Application shutdown complete." in server.output()
        await assert_refused(server.url)


@pytest.mark.timeout(90)
async def test_no_worker_outlives_a_killed_server(db_url: str) -> None:
    with run_pts_serve(db_url, "--workers", "2") as server:
        server.process.kill()  # SIGKILL: the supervisor cannot stop its workers
        await asyncio.to_thread(server.process.wait, 15)
    # Leaving the harness killed the process group, orphaned workers included.
    await wait_until_refused(server.url)


@pytest.mark.timeout(90)
async def test_dsn_option_is_resolved_once_and_reaches_every_worker(db_url: str) -> None:
    # The environment names a database nobody can reach; --dsn wins, in every worker.
    unreachable = "postgresql://nobody@127.0.0.1:9/nothing"
    with run_pts_serve(
        unreachable, "--dsn", db_url, "--workers", "2", env={"PTS_ADMIN_TOKEN": TOKEN}
    ) as server:
        for _ in range(4):
            async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
                assert (await client.post("/streams")).status_code == 201


async def test_unreachable_database_fails_before_serving() -> None:
    with (
        pytest.raises(RuntimeError, match="cannot connect to the database") as failed,
        run_pts_serve("postgresql://nobody@127.0.0.1:9/nothing"),
    ):
        pass
    assert "exited with code 1" in str(failed.value)
    assert "Traceback" not in str(failed.value)

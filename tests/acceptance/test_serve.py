"""``pts serve`` in a subprocess, over real HTTP: several workers, one database, clean stops."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import uuid

import httpx
import pytest
from click.testing import CliRunner

from pts.cli import is_loopback_host, main
from pts.core import PersistentTextStreaming
from pts.errors import ConfigurationError
from pts.http.app import create_app
from pts.http.serving import raise_open_file_limit
from pts.plugin import PTSPlugin
from tests.support.servers import ServerProcess, free_port, run_pts_serve

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
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
                pass  # accepted by a worker that died mid-answer: look again
            await asyncio.sleep(0.05)


async def assert_refused(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")


async def stop_with_sigterm(server: ServerProcess, guard: float = 15.0) -> int:
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


# -- --no-auth and --long-poll-timeout ---------------------------------------------------

NOWHERE = "postgresql://nobody@127.0.0.1:9/nothing"  # port 9 (discard): nothing listens


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``pts serve`` in a subprocess that is expected to exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "pts.cli", "serve", "--port", str(free_port()), *args],
        env={**os.environ, "PTS_DATABASE_URL": NOWHERE, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--no-auth", "--host", "0.0.0.0"), {}), (("--host", "::"), {"PTS_NO_AUTH": "1"})],
)
def test_no_auth_refuses_a_non_loopback_address(args: tuple[str, ...], env: dict[str, str]) -> None:
    result = run_serve(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--no-auth" in result.stderr
    assert "only binds loopback addresses" in result.stderr
    assert "Traceback" not in result.stderr
    # Refused before anything else: the unreachable database was never tried.
    assert "cannot connect to the database" not in result.stderr
    assert "pts serving" not in result.stdout


@pytest.mark.timeout(90)
async def test_no_auth_serves_without_a_token_and_warns(db_url: str) -> None:
    env = {"PTS_ADMIN_TOKEN": ""}  # no token either: only --no-auth lets requests in
    with run_pts_serve(db_url, "--no-auth", "--long-poll-timeout", "2.5", env=env) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            created = await client.post("/streams", json={"client_id": "no-auth"})
            assert created.status_code == 201, created.text
            stream_id = created.json()["id"]
            got = await client.get(f"/streams/{stream_id}")
            assert got.status_code == 200, got.text
            assert (await client.delete(f"/streams/{stream_id}")).status_code == 204
            # The Durable Streams routes too (what the conformance suite relies on).
            headers = {"content-type": "text/plain"}
            put = await client.put("/v1/stream/no-auth", headers=headers)
            assert put.status_code == 201, put.text
            post = await client.post("/v1/stream/no-auth", content=b"hello", headers=headers)
            assert post.status_code == 204, post.text
        output = server.output()
        assert "WARNING: --no-auth: no access control" in output
        assert "every request is allowed" in output


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", ""])
def test_long_poll_timeout_must_be_a_positive_number(value: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--long-poll-timeout", value])
    assert result.exit_code == 2, result.output
    assert "--long-poll-timeout" in result.output


def test_serve_refuses_a_malformed_gc_threshold_before_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PTS_GC_THRESHOLD", "lots")
    # Were it not checked first, the unreachable database would fail the command (exit 1).
    result = CliRunner().invoke(
        main, ["serve", "--port", "0", "--dsn", "postgresql://nowhere.invalid:1/x"]
    )
    assert result.exit_code == 2, result.output
    assert "PTS_GC_THRESHOLD='lots' is not a whole number" in result.output


def _app_plugin(
    *, no_auth: bool | None = None, long_poll_timeout: float | None = None
) -> PTSPlugin:
    # Building the app opens nothing: the pool opens with the lifespan, never run here.
    pts = PersistentTextStreaming(dsn=NOWHERE)
    app = create_app(pts, no_auth=no_auth, long_poll_timeout=long_poll_timeout)
    return app.plugins.get(PTSPlugin)


def test_create_app_reads_its_options_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PTS_NO_AUTH", raising=False)
    monkeypatch.delenv("PTS_LONG_POLL_TIMEOUT", raising=False)
    default = _app_plugin()
    assert (default.authorize, default.long_poll_timeout) == (None, 30.0)

    monkeypatch.setenv("PTS_NO_AUTH", "1")
    monkeypatch.setenv("PTS_LONG_POLL_TIMEOUT", "2.5")
    plugin = _app_plugin()
    assert plugin.long_poll_timeout == 2.5
    assert plugin.authorize is not None
    assert plugin.authorize(None, "delete", None) is True  # type: ignore[arg-type]

    # Explicit arguments win over the environment.
    explicit = _app_plugin(no_auth=False, long_poll_timeout=7.0)
    assert (explicit.authorize, explicit.long_poll_timeout) == (None, 7.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PTS_NO_AUTH", "maybe", "PTS_NO_AUTH='maybe' is not a flag"),
        ("PTS_LONG_POLL_TIMEOUT", "abc", "PTS_LONG_POLL_TIMEOUT='abc' is not a positive number"),
        ("PTS_LONG_POLL_TIMEOUT", "0", "is not a positive number of seconds"),
        ("PTS_LONG_POLL_TIMEOUT", "-3", "is not a positive number of seconds"),
        ("PTS_LONG_POLL_TIMEOUT", "inf", "is not a positive number of seconds"),
        ("PTS_GC_THRESHOLD", "many", "PTS_GC_THRESHOLD='many' is not a whole number"),
        ("PTS_GC_THRESHOLD", "0", "is not a whole number from 1"),
        ("PTS_GC_THRESHOLD", "1e5", "is not a whole number from 1"),
        ("PTS_GC_THRESHOLD", "99999999999", "is not a whole number from 1"),
    ],
)
def test_create_app_refuses_malformed_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        _app_plugin()


def test_create_app_refuses_no_auth_with_an_authorize_hook() -> None:
    with pytest.raises(ConfigurationError, match="exclude each other"):
        create_app(PersistentTextStreaming(dsn=NOWHERE), authorize=lambda *_: True, no_auth=True)


# -- connections: request-head deadline, keep-alive, concurrency, origins ----------------


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (EOF or reset); False while it is open."""
    try:
        return sock.recv(4096) == b""  # a 408 or any answer would be data: not expected here
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


async def wait_all_closed(socks: list[socket.socket], guard: float) -> None:
    """Return once the server has closed every socket (a hang guard, not a speed check)."""
    open_socks = list(socks)
    async with asyncio.timeout(guard):
        while open_socks:
            open_socks = [s for s in open_socks if not _closed_by_peer(s)]
            await asyncio.sleep(0.05)


def open_sockets(url: str, count: int, sent: bytes) -> list[socket.socket]:
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    socks = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5)
        if sent:
            sock.sendall(sent)
        sock.setblocking(False)
        socks.append(sock)
    return socks


HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.mark.timeout(90)
async def test_connections_with_an_incomplete_request_head_are_closed(db_url: str) -> None:
    args = ("--no-auth", "--workers", "2", "--header-timeout", "1.5")
    with run_pts_serve(db_url, *args) as server:
        # Half a head, nothing at all: both held a connection open forever.
        socks = open_sockets(server.url, 40, HALF_HEAD) + open_sockets(server.url, 10, b"")
        try:
            # A complete request on the same kind of connection is answered meanwhile.
            async with httpx.AsyncClient(base_url=server.url) as client:
                assert (await client.get("/healthz")).status_code == 200
            await wait_all_closed(socks, guard=30)
        finally:
            for sock in socks:
                sock.close()
        # A kept-alive connection that starts its next request and stalls is closed too.
        (kept,) = open_sockets(server.url, 1, b"")
        try:
            kept.setblocking(True)
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert kept.recv(4096).startswith(b"HTTP/1.1 200")
            kept.sendall(HALF_HEAD)
            kept.setblocking(False)
            await wait_all_closed([kept], guard=30)
        finally:
            kept.close()
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).status_code == 200


@pytest.mark.timeout(90)
async def test_a_slow_response_is_not_cut_by_the_header_timeout(db_url: str) -> None:
    # The deadline is for the request's head: a long-poll outlasts it.
    args = ("--no-auth", "--header-timeout", "0.5", "--long-poll-timeout", "2")
    with run_pts_serve(db_url, *args) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            put = await client.put("/v1/stream/slow", headers={"content-type": "text/plain"})
            assert put.status_code == 201
            offset = put.headers["stream-next-offset"]
            polled = await client.get(
                "/v1/stream/slow", params={"offset": offset, "live": "long-poll"}
            )
            assert polled.status_code == 204


@pytest.mark.parametrize(
    "args",
    [
        ("--header-timeout", "0"),
        ("--header-timeout", "nan"),
        ("--timeout-keep-alive", "0"),
        ("--limit-concurrency", "0"),
        ("--cors-origin", "https://app.example/"),
    ],
)
def test_connection_options_are_checked(args: tuple[str, ...]) -> None:
    result = run_serve(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert args[0] in result.stderr or "PTS_CORS_ORIGINS" in result.stderr
    assert "Traceback" not in result.stderr


def test_connection_options_reach_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    # This process's open-file limit stays as it is.
    monkeypatch.setattr("pts.http.serving.raise_open_file_limit", lambda wanted: wanted)

    from pts.http.serving import HeaderTimeoutProtocol

    seen: dict[str, object] = {}
    monkeypatch.setattr("pts.http.shutdown.run", lambda *_a, **kw: seen.update(kw))
    monkeypatch.setattr("pts.store.migrations.migrate", _no_migration)
    monkeypatch.setattr("pts.cli_serve.resolve_dsn", lambda _s: NOWHERE)
    # serve sets variables for its workers: set here first, so that monkeypatch
    # restores them (unset) after the test, and the other tests' servers never see them.
    for name in (
        "PTS_HEADER_TIMEOUT",
        "PTS_TIMEOUT_KEEP_ALIVE",
        "PTS_LIMIT_CONCURRENCY",
        "PTS_CORS_ORIGINS",
        "PTS_DATABASE_URL",
        "PTS_NO_AUTH",
        "PTS_LONG_POLL_TIMEOUT",
    ):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert CliRunner().invoke(main, ["serve"]).exit_code == 0
    assert (seen["timeout_keep_alive"], seen["limit_concurrency"]) == (5, 10_000)
    protocol = seen["http"]
    assert isinstance(protocol, functools.partial)
    assert protocol.func is HeaderTimeoutProtocol
    assert protocol.keywords == {"header_timeout": 10.0}

    monkeypatch.setenv("PTS_HEADER_TIMEOUT", "3.5")
    monkeypatch.setenv("PTS_LIMIT_CONCURRENCY", "4096")
    args = ["serve", "--timeout-keep-alive", "7", "--cors-origin", "https://a.example"]
    result = CliRunner().invoke(main, [*args, "--cors-origin", "http://localhost:5173"])
    assert result.exit_code == 0, result.output
    assert (seen["timeout_keep_alive"], seen["limit_concurrency"]) == (7, 4096)
    protocol = seen["http"]
    assert isinstance(protocol, functools.partial)
    assert protocol.keywords == {"header_timeout": 3.5}
    assert os.environ["PTS_CORS_ORIGINS"] == "https://a.example http://localhost:5173"


async def _no_migration(_url: str) -> list[object]:
    return []


@pytest.mark.timeout(90)
async def test_no_auth_cors_origin_option_reaches_the_workers(db_url: str) -> None:
    args = ("--no-auth", "--workers", "2", "--cors-origin", "https://app.example")
    with run_pts_serve(db_url, *args) as server:
        for _ in range(4):  # fresh connections: both workers
            async with httpx.AsyncClient(base_url=server.url) as client:
                allowed = await client.get("/healthz", headers={"origin": "https://app.example"})
                assert allowed.status_code == 200
                evil = await client.get("/healthz", headers={"origin": "https://evil.example"})
                assert evil.status_code == 403
                assert evil.json()["error"] == "forbidden"
                rebound = await client.get("/healthz", headers={"host": "evil.example"})
                assert rebound.status_code == 403


@pytest.mark.timeout(90)
async def test_the_concurrency_limit_answers_503_until_connections_close(db_url: str) -> None:
    args = ("--no-auth", "--limit-concurrency", "10", "--header-timeout", "2")
    with run_pts_serve(db_url, *args) as server:
        socks = open_sockets(server.url, 10, HALF_HEAD)
        try:
            async with httpx.AsyncClient(base_url=server.url) as client:
                assert (await client.get("/healthz")).status_code == 503
            await wait_all_closed(socks, guard=30)
        finally:
            for sock in socks:
                sock.close()
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).status_code == 200


def test_the_open_file_limit_is_raised_for_the_connections() -> None:
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        wanted = min(2048, hard)
        assert raise_open_file_limit(wanted) == wanted
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == wanted
        assert raise_open_file_limit(100) == wanted  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

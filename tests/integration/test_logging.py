"""What the server logs: every unexpected error once with its traceback, an outage throttled,
nothing a client sends able to forge a line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, Response, get

from pts import logsafe
from pts.core import PersistentTextStreaming
from pts.errors import StoreUnavailable
from pts.logsafe import Throttle, safe, warn_throttled
from pts.plugin import PTSPlugin, allow_everything
from pts.store.migrations import migrate
from tests.support.postgres import embedded_server
from tests.support.servers import serve_app

TEXT = {"content-type": "text/plain"}


@pytest.fixture(autouse=True)
def fresh_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no kind of failure on cooldown (the throttle is per process)."""
    monkeypatch.setattr(logsafe, "outage_throttle", Throttle())


class Collector(logging.Handler):
    """Every record of pts's loggers and of Litestar's own (which does not propagate).

    Collected on those loggers, not the root's handlers, which building a
    Litestar app replaces (caplog's among them), as it replaces the
    ``litestar`` logger's: call :meth:`attach` again after building an app.
    """

    NAMES = ("pts", "litestar", "uvicorn.error")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def attach(self) -> None:
        for name in self.NAMES:
            logging.getLogger(name).addHandler(self)  # once: addHandler ignores a duplicate

    def detach(self) -> None:
        for name in self.NAMES:
            logging.getLogger(name).removeHandler(self)


@pytest.fixture
def collector() -> Iterator[Collector]:
    collect = Collector()
    pts_logger = logging.getLogger("pts")
    level = pts_logger.level
    pts_logger.setLevel(logging.INFO)
    collect.attach()
    try:
        yield collect
    finally:
        collect.detach()
        pts_logger.setLevel(level)


def tracebacks(records: list[logging.LogRecord], exc_type: type[BaseException]) -> int:
    return sum(1 for r in records if r.exc_info is not None and isinstance(r.exc_info[1], exc_type))


class Boom(RuntimeError):
    """An error no handler expects."""


def fail(*_args: object, **_kwargs: object) -> Any:
    raise Boom("unexpected\nfailure")


@get("/app-route", sync_to_thread=False)
def app_route() -> str:
    """A route of the app's own, next to the plugin's."""
    raise Boom("the app's route failed")


def make_app(pts: PersistentTextStreaming, **kwargs: Any) -> Litestar:
    plugin = PTSPlugin(pts, authorize=allow_everything)
    return Litestar(route_handlers=[app_route], plugins=[plugin], **kwargs)


# -- escaping and throttling -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("plain/path", "plain/path"),
        ("a\nb\r\nc", "a\\nb\\r\\nc"),
        ("tab\there", "tab\\there"),
        ("nul\x00 esc\x1b[31m del\x7f c1\x85", "nul\\x00 esc\\x1b[31m del\\x7f c1\\x85"),
        ("line\u2028sep bidi\u202e", "line\\u2028sep bidi\\u202e"),
        ("back\\slash", "back\\\\slash"),
        ("unicodé ✓", "unicodé ✓"),
    ],
)
def test_safe_escapes_what_could_forge_a_line(raw: str, logged: str) -> None:
    assert safe(raw) == logged


def test_safe_shortens_long_values() -> None:
    logged = safe("x" * 10_000)
    assert len(logged) < 400
    assert "10000 characters" in logged


def test_throttle_lets_one_record_per_interval_through_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    throttle = Throttle(interval=10.0, clock=lambda: now[0])
    log = logging.getLogger("tests.throttle")
    caplog.set_level(logging.WARNING, logger="tests.throttle")
    for _ in range(50):
        warn_throttled(log, "outage", "down: %s", "x", throttle=throttle)
    warn_throttled(log, "other", "another kind", throttle=throttle)
    now[0] += 10.0
    warn_throttled(log, "outage", "down: %s", "y", throttle=throttle)
    warn_throttled(log, "outage", "down: %s", "z", throttle=throttle)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "down: x",
        "another kind",
        "down: y (and 49 more like it not logged, at most one every 10 s)",
    ]


# -- unexpected errors -------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
async def test_an_unexpected_error_is_logged_once_and_answered_as_json(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    collector: Collector,
    debug: bool,
) -> None:
    pts = PersistentTextStreaming(dsn=db_url)
    monkeypatch.setattr(pts, "create_stream", fail)
    app = make_app(pts, debug=debug)
    collector.attach()
    records = collector.records
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        for path in ("/streams", "/app-route"):
            records.clear()
            response = await (
                client.post(path, json={}) if path == "/streams" else client.get(path)
            )
            assert response.status_code == 500, response.text
            assert response.json()["error"] == "internal_error"
            if not debug:  # the message stays in the log
                assert "failure" not in response.text
                assert "the server log has the details" in response.json()["detail"]
            assert tracebacks(records, Boom) == 1, [r.getMessage() for r in records]


async def test_the_apps_own_handlers_still_win(db_url: str) -> None:
    def by_type(_request: Request[Any, Any, Any], _exc: Exception) -> Response[str]:
        return Response("mine", status_code=418)

    def by_status(_request: Request[Any, Any, Any], _exc: Exception) -> Response[str]:
        return Response("mine too", status_code=503)

    pts = PersistentTextStreaming(dsn=db_url)
    for handlers, expected in (({Boom: by_type}, 418), ({500: by_status}, 503)):
        app = make_app(pts, exception_handlers=handlers)
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/app-route")).status_code == expected
            # Not-found and validation errors keep Litestar's answers.
            assert (await client.get("/nowhere")).status_code == 404
            assert (await client.post("/streams", content=b"{")).status_code == 400


async def test_a_path_cannot_forge_a_log_line(
    db_url: str, monkeypatch: pytest.MonkeyPatch, collector: Collector
) -> None:
    pts = PersistentTextStreaming(dsn=db_url)
    forged = "/v1/stream/a%0a2026-01-01 00:00:00 CRITICAL forged%0d%0aline"
    app = make_app(pts)
    collector.attach()
    records = collector.records
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        monkeypatch.setattr(pts.store, "ds_lookup", fail)
        records.clear()
        assert (await client.get(forged)).status_code == 500
        (record,) = [r for r in records if r.name.startswith("pts")]
        assert record.exc_info is not None
        assert "\n" not in record.getMessage()
        assert "\r" not in record.getMessage()
        assert "a\\n2026-01-01 00:00:00 CRITICAL forged\\r\\nline" in record.getMessage()
        assert "unexpected\\nfailure" in record.getMessage()  # the error's message too

        async def unavailable(*_args: object, **_kwargs: object) -> None:
            raise StoreUnavailable("database unavailable\nforged too")

        monkeypatch.setattr(pts.store, "ds_lookup", unavailable)
        records.clear()
        assert (await client.get(forged)).status_code == 503
        (record,) = [r for r in records if r.name.startswith("pts")]
        assert "\n" not in record.getMessage()
        assert "a\\n2026" in record.getMessage()


# -- a database outage -------------------------------------------------------------------


def pg_ctl(pgdata: Path, *args: str) -> None:
    """Run ``pg_ctl`` on an embedded Postgres (``start`` with the options it last ran with)."""
    import pgserver

    if args[0] == "start":
        # pgserver passes its socket directory on the command line, not in a file:
        # the options of the last run (in postmaster.opts) without -D and its value.
        opts = shlex.split((pgdata / "postmaster.opts").read_text())[1:]
        at = opts.index("-D")
        args = (*args, "-o", shlex.join(opts[:at] + opts[at + 2 :]))

    binary = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs Postgres as this user
    subprocess.run(
        [str(binary), "-D", str(pgdata), "-l", str(pgdata / "log"), "-w", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=user,
        timeout=60,
    )


@pytest.fixture
async def stoppable() -> AsyncIterator[tuple[str, Path]]:
    """A private Postgres this test may stop without disturbing the others."""
    with embedded_server() as (url, pgdata):
        await migrate(url)
        yield url, pgdata


@pytest.mark.timeout(120)
async def test_an_outage_is_logged_a_few_times_not_once_per_request(
    stoppable: tuple[str, Path], collector: Collector
) -> None:
    url, pgdata = stoppable
    # Live subscribers' tails poll often, so that each would log several times.
    pts = PersistentTextStreaming(dsn=url, poll_interval=0.05)
    app = make_app(pts)
    collector.attach()
    records = collector.records
    async with (
        serve_app(app) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        contextlib.AsyncExitStack() as subscriptions,
    ):
        stream_id = (await client.post("/streams", json={})).json()["id"]
        assert (await client.put("/v1/stream/outage", headers=TEXT)).status_code == 201
        for _ in range(10):
            watched = uuid.UUID((await client.post("/streams", json={})).json()["id"])
            updates = pts.subscribe(watched)
            subscriptions.push_async_callback(updates.aclose)
            await anext(updates)  # caught up: its stream's tail runs
        records.clear()
        await asyncio.to_thread(pg_ctl, pgdata, "-m", "fast", "stop")
        try:
            statuses = []
            for _ in range(20):
                statuses += [
                    (await client.get(f"/streams/{stream_id}")).status_code,
                    (await client.post("/streams", json={})).status_code,
                    (
                        await client.post("/v1/stream/outage", content=b"x", headers=TEXT)
                    ).status_code,
                    (await client.get("/v1/stream/outage", params={"offset": "-1"})).status_code,
                ]
            assert statuses == [503] * 80
            ours = [r for r in records if r.name.startswith("pts") and r.levelno >= logging.WARNING]
            # One line per kind of failure and logger (plugin, protocol), listener,
            # background loops: a handful, where there were 80 tracebacks.
            assert len(ours) <= 8, [f"{r.name}: {r.getMessage()}" for r in ours]
            assert [r for r in ours if r.exc_info] == []
            for name in ("pts.plugin", "pts.durable", "pts.hub"):
                # At most one every 10 s: once here, unless the loop took that long.
                assert 1 <= sum(1 for r in ours if r.name == name) <= 2
        finally:
            await asyncio.to_thread(pg_ctl, pgdata, "start")
        # Served again once the database is back.
        async with asyncio.timeout(30):
            while (await client.get(f"/streams/{stream_id}")).status_code != 200:
                await asyncio.sleep(0.1)

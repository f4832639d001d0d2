"""The LISTEN connection: notifications reach handlers, and outages are survived."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from pts.live.listener import Listener, Notification
from pts.models import StreamStatus
from pts.store import SQLStore, create_store
from pts.store.queries import queries

# Hang guard only: every wait below normally ends in milliseconds.
GUARD = 10.0
UNREACHABLE = "postgresql://x@127.0.0.1:9/none"


class Inbox:
    """A handler that queues what it receives, so tests can await it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Notification] = asyncio.Queue()
        self.received: list[Notification] = []

    def __call__(self, notification: Notification) -> None:
        self.received.append(notification)
        self.queue.put_nowait(notification)

    async def next(self) -> Notification:
        return await asyncio.wait_for(self.queue.get(), GUARD)


class Flag:
    """A reconnect handler that counts its calls and can be awaited."""

    def __init__(self, listener: Listener | None = None) -> None:
        self.calls = 0
        self.connected_when_called: list[bool] = []
        self._listener = listener
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self.calls += 1
        if self._listener is not None:
            self.connected_when_called.append(self._listener.connected)
        self._event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self._event.wait(), GUARD)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it is true (hang-guarded): for state with no event to await."""

    async def poll() -> None:
        # Polling on purpose: server-side state (pg_stat_activity) has no event.
        while not await check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), GUARD)


@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A plain connection to the test database, for SQL the listener must hear."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(db_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SQLStore]:
    s = create_store(db_url, min_size=1, max_size=2)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def listener(db_url: str) -> AsyncIterator[Listener]:
    lst = Listener(db_url, backoff_initial=0.01, backoff_max=0.2)
    await asyncio.wait_for(lst.start(), GUARD)
    try:
        yield lst
    finally:
        await asyncio.wait_for(lst.stop(), GUARD)


async def backend_alive(admin: asyncpg.Connection[Any], pid: int) -> bool:
    return bool(await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid))


# -- notifications -------------------------------------------------------------------


async def test_committed_changes_reach_the_handler(listener: Listener, store: SQLStore) -> None:
    inbox = Inbox()
    listener.add_handler(inbox)
    assert listener.connected

    info = await store.create_stream(status=StreamStatus.STREAMING)
    assert await inbox.next() == Notification(info.id, 0, "streaming", False)

    size = await store.append(info.id, b"Hello. ", offset=0)
    assert await inbox.next() == Notification(info.id, 7, "streaming", False)

    await store.append(info.id, b"Bye.", offset=size, finish=StreamStatus.DONE)
    assert await inbox.next() == Notification(info.id, 11, "done", True)

    await store.delete_stream(info.id)
    assert await inbox.next() == Notification(info.id, 11, "deleted", True)


async def test_plain_sql_changes_reach_the_handler(
    listener: Listener, admin: asyncpg.Connection[Any]
) -> None:
    inbox = Inbox()
    listener.add_handler(inbox)
    stream_id = await admin.fetchval("INSERT INTO pts.streams DEFAULT VALUES RETURNING id")
    assert await inbox.next() == Notification(stream_id, 0, "pending", False)
    await admin.execute("UPDATE pts.streams SET size = 5 WHERE id = $1", stream_id)
    got = await inbox.next()
    assert (got.stream_id, got.size, got.status, got.closed) == (stream_id, 5, "pending", False)
    assert isinstance(got.stream_id, uuid.UUID)


async def test_removed_handler_is_not_called(listener: Listener, store: SQLStore) -> None:
    kept, removed = Inbox(), Inbox()
    listener.add_handler(kept)
    remove = listener.add_handler(removed)
    first = await store.create_stream()
    assert (await kept.next()).stream_id == first.id
    assert [n.stream_id for n in removed.received] == [first.id]

    remove()
    remove()  # a second removal is a no-op
    second = await store.create_stream()
    assert (await kept.next()).stream_id == second.id
    # Handlers run one after another in the same callback: had `removed` still
    # been registered, it would have been called by now.
    assert [n.stream_id for n in removed.received] == [first.id]


async def test_same_handler_added_twice_is_called_twice(
    listener: Listener, store: SQLStore
) -> None:
    inbox = Inbox()
    remove_first = listener.add_handler(inbox)
    listener.add_handler(inbox)
    info = await store.create_stream()
    assert (await inbox.next()).stream_id == info.id
    assert (await inbox.next()).stream_id == info.id

    remove_first()  # removes one registration, not both
    other = await store.create_stream()
    assert (await inbox.next()).stream_id == other.id
    assert [n.stream_id for n in inbox.received] == [info.id, info.id, other.id]


async def test_raising_handler_does_not_stop_others(
    listener: Listener, store: SQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(notification: Notification) -> None:
        raise RuntimeError("handler bug")

    listener.add_handler(broken)
    inbox = Inbox()
    listener.add_handler(inbox)

    a = await store.create_stream()
    b = await store.create_stream()
    assert (await inbox.next()).stream_id == a.id
    assert (await inbox.next()).stream_id == b.id
    assert listener.connected
    failures = [
        r for r in caplog.records if r.name == "pts.listener" and r.levelno == logging.ERROR
    ]
    assert len(failures) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failures)


_ID = "6b1d8a39-8b7e-4a43-9d1f-0b8e6c1a2f3e"


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        '{"id": "x", "size": 1, "status": "done", "closed": true}',
        '{"size": 1, "status": "done", "closed": true}',
        f'{{"id": "{_ID}", "size": "1", "status": "done", "closed": true}}',
        f'{{"id": "{_ID}", "size": -1, "status": "done", "closed": true}}',
        f'{{"id": "{_ID}", "size": true, "status": "done", "closed": true}}',
        f'{{"id": "{_ID}", "size": 1, "status": 3, "closed": true}}',
        f'{{"id": "{_ID}", "size": 1, "status": "done", "closed": 1}}',
    ],
)
def test_malformed_payloads_are_rejected(payload: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every kind of malformation is a ValueError
        Notification.from_payload(payload)


def test_payload_parses() -> None:
    stream_id = uuid.uuid4()
    payload = f'{{"id": "{stream_id}", "size": 12, "status": "deleted", "closed": true}}'
    assert Notification.from_payload(payload) == Notification(stream_id, 12, "deleted", True)


async def test_malformed_notification_is_logged_and_ignored(
    listener: Listener,
    admin: asyncpg.Connection[Any],
    store: SQLStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = Inbox()
    listener.add_handler(inbox)
    await admin.execute("SELECT pg_notify('pts_v1', 'not json')")
    await admin.execute("""SELECT pg_notify('pts_v1', '{"id": "nope"}')""")
    info = await store.create_stream()
    # Postgres delivers notifications in commit order: the malformed ones came first.
    assert (await inbox.next()).stream_id == info.id
    assert inbox.received == [Notification(info.id, 0, "pending", False)]
    warnings = [
        r for r in caplog.records if r.name == "pts.listener" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 2
    assert listener.connected


async def test_a_batched_notification_wakes_each_stream_it_names_once(
    listener: Listener,
    admin: asyncpg.Connection[Any],
    store: SQLStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = Inbox()
    listener.add_handler(inbox)
    ids = [uuid.uuid4() for _ in range(4)]
    entries: list[object] = [
        {"id": str(i), "size": n, "status": "streaming", "closed": False} for n, i in enumerate(ids)
    ]
    # Checked, not trusted: malformed entries are skipped, the rest delivered; a stream
    # named twice is delivered once, with its last entry.
    entries[1:1] = [{"id": "nope"}, "text", {"id": str(ids[0]), "size": True}]
    entries.append({"id": str(ids[3]), "size": 9, "status": "done", "closed": True})
    await admin.execute("SELECT pg_notify('pts_v2', $1)", json.dumps(entries))
    await admin.execute("SELECT pg_notify('pts_v2', $1)", "not json")
    await admin.execute("SELECT pg_notify('pts_v2', $1)", '{"id": "not a list"}')
    info = await store.create_stream()  # on pts_v1, committed after the batches
    while (await inbox.next()).stream_id != info.id:
        pass
    assert inbox.received == [
        Notification(ids[0], 0, "streaming", False),
        Notification(ids[1], 1, "streaming", False),
        Notification(ids[2], 2, "streaming", False),
        Notification(ids[3], 9, "done", True),
        Notification(info.id, 0, "pending", False),
    ]
    warnings = [
        r for r in caplog.records if r.name == "pts.listener" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 5  # three bad entries, two bad payloads
    assert listener.connected


async def test_custom_channel(db_url: str, admin: asyncpg.Connection[Any]) -> None:
    def payload(stream_id: uuid.UUID) -> str:
        return f'{{"id": "{stream_id}", "size": 3, "status": "streaming", "closed": false}}'

    stream_id = uuid.uuid4()
    inbox = Inbox()
    async with Listener(db_url, channel="pts_other") as lst:
        lst.add_handler(inbox)
        await admin.execute("SELECT pg_notify('pts_v1', $1)", payload(uuid.uuid4()))
        await admin.execute("SELECT pg_notify('pts_other', $1)", payload(stream_id))
        assert await inbox.next() == Notification(stream_id, 3, "streaming", False)
        assert len(inbox.received) == 1  # pts_v1 was not listened to
    assert not lst.connected


# -- reconnecting ----------------------------------------------------------------------


async def test_reconnects_after_backend_is_terminated(
    listener: Listener,
    admin: asyncpg.Connection[Any],
    store: SQLStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pts.listener")
    inbox = Inbox()
    listener.add_handler(inbox)
    reconnected = Flag(listener)
    listener.add_reconnect_handler(reconnected)
    assert listener.reconnects == 0
    assert reconnected.calls == 0  # not called for the first connection
    old_pid = listener.backend_pid
    assert old_pid is not None

    assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    await reconnected.wait()

    assert listener.reconnects == 1
    assert reconnected.calls == 1
    assert reconnected.connected_when_called == [True]  # LISTEN was in effect already
    assert listener.connected
    assert listener.backend_pid not in (None, old_pid)
    info = await store.create_stream()
    assert (await inbox.next()).stream_id == info.id

    records = [r for r in caplog.records if r.name == "pts.listener"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO]


async def test_reconnects_after_repeated_terminations(
    listener: Listener, admin: asyncpg.Connection[Any], store: SQLStore
) -> None:
    inbox = Inbox()
    listener.add_handler(inbox)
    for expected in (1, 2, 3):
        pid = listener.backend_pid
        assert pid is not None
        reconnected = Flag()
        remove = listener.add_reconnect_handler(reconnected)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await reconnected.wait()
        remove()
        assert listener.reconnects == expected
        assert listener.connected
    info = await store.create_stream()
    assert (await inbox.next()).stream_id == info.id


async def test_removed_reconnect_handler_is_not_called(
    listener: Listener, admin: asyncpg.Connection[Any]
) -> None:
    removed, kept = Flag(), Flag()
    remove = listener.add_reconnect_handler(removed)
    listener.add_reconnect_handler(kept)
    remove()

    def broken() -> None:
        raise RuntimeError("reconnect handler bug")

    listener.add_reconnect_handler(broken)
    later = Flag()
    listener.add_reconnect_handler(later)

    assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener.backend_pid)
    await later.wait()  # called despite the broken handler before it
    assert (kept.calls, removed.calls, later.calls) == (1, 0, 1)


async def test_probe_keeps_a_healthy_connection(
    db_url: str, admin: asyncpg.Connection[Any], store: SQLStore
) -> None:
    probe = queries()["listener_probe"]
    async with Listener(db_url, probe_interval=0.05, probe_timeout=2.0) as lst:
        inbox = Inbox()
        lst.add_handler(inbox)
        pid = lst.backend_pid
        assert pid is not None

        async def probed() -> bool:
            query = await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
            return bool(query == probe)

        await eventually(probed)  # the listener's last statement is the probe
        assert lst.reconnects == 0
        assert lst.backend_pid == pid
        info = await store.create_stream()
        assert (await inbox.next()).stream_id == info.id


async def test_probe_detects_a_silent_connection(db_url: str) -> None:
    async with TcpProxy(db_url) as proxy:
        lst = Listener(
            proxy.url, probe_interval=0.1, probe_timeout=0.3, backoff_initial=0.01, backoff_max=0.1
        )
        await asyncio.wait_for(lst.start(), GUARD)
        try:
            assert lst.connected
            inbox = Inbox()
            lst.add_handler(inbox)
            reconnected = Flag()
            lst.add_reconnect_handler(reconnected)

            # The socket stays open and says nothing: no termination is ever
            # reported, only the probe can notice.
            proxy.blackhole_open_connections()
            await reconnected.wait()
            assert lst.reconnects == 1
            assert lst.connected

            store = create_store(db_url, min_size=1, max_size=1)
            await store.open()
            try:
                info = await store.create_stream()
                assert (await inbox.next()).stream_id == info.id
            finally:
                await store.close()
        finally:
            await asyncio.wait_for(lst.stop(), GUARD)


# -- an unreachable database -------------------------------------------------------------


async def test_start_with_unreachable_database(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pts.listener")
    lst = Listener(UNREACHABLE, backoff_initial=0.01, backoff_max=0.05)
    await asyncio.wait_for(lst.start(), GUARD)  # returns, does not raise
    assert not lst.connected
    assert lst.backend_pid is None
    assert not await lst.wait_connected(timeout=0.05)

    def ours(level: int) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "pts.listener" and r.levelno == level]

    # Let it retry a few times: one WARNING for the outage, the retries at DEBUG.
    await eventually(lambda: _true(len(ours(logging.DEBUG)) >= 3))
    assert len(ours(logging.WARNING)) == 1

    await asyncio.wait_for(lst.stop(), GUARD)
    assert not lst.connected
    assert _other_tasks() == set()


async def test_connects_when_the_database_comes_up(db_url: str, store: SQLStore) -> None:
    async with TcpProxy(db_url) as proxy:
        proxy.refuse = True  # the database is "down": connections are cut at once
        lst = Listener(proxy.url, backoff_initial=0.01, backoff_max=0.05)
        await asyncio.wait_for(lst.start(), GUARD)
        try:
            assert not lst.connected
            inbox = Inbox()
            lst.add_handler(inbox)
            came_up = Flag(lst)
            lst.add_reconnect_handler(came_up)

            proxy.refuse = False
            assert await lst.wait_connected(timeout=GUARD)
            # Notifications may have been missed since start() returned, so
            # consumers are told to catch up.
            await came_up.wait()
            assert came_up.connected_when_called == [True]
            assert lst.reconnects == 1
            info = await store.create_stream()
            assert (await inbox.next()).stream_id == info.id
        finally:
            await asyncio.wait_for(lst.stop(), GUARD)


# -- start and stop ----------------------------------------------------------------------


async def test_stop_is_idempotent_and_leaves_nothing_running(
    db_url: str, admin: asyncpg.Connection[Any]
) -> None:
    lst = Listener(db_url)
    await lst.stop()  # before start: a no-op
    await asyncio.wait_for(lst.start(), GUARD)
    await asyncio.wait_for(lst.start(), GUARD)  # already started: a no-op
    assert await lst.wait_connected(timeout=0)
    pid = lst.backend_pid
    assert pid is not None
    assert _other_tasks() != set()

    await asyncio.wait_for(lst.stop(), GUARD)
    await asyncio.wait_for(lst.stop(), GUARD)
    assert not lst.connected
    assert lst.backend_pid is None
    assert _other_tasks() == set()
    await eventually(lambda: _not(backend_alive(admin, pid)))  # the connection was closed


async def test_concurrent_stops(db_url: str) -> None:
    lst = Listener(db_url)
    await asyncio.wait_for(lst.start(), GUARD)
    await asyncio.wait_for(asyncio.gather(lst.stop(), lst.stop()), GUARD)
    assert _other_tasks() == set()


async def test_restart_after_stop(db_url: str, store: SQLStore) -> None:
    lst = Listener(db_url)
    inbox = Inbox()
    lst.add_handler(inbox)
    await asyncio.wait_for(lst.start(), GUARD)
    await asyncio.wait_for(lst.stop(), GUARD)
    await asyncio.wait_for(lst.start(), GUARD)
    try:
        assert lst.connected
        info = await store.create_stream()
        assert (await inbox.next()).stream_id == info.id
    finally:
        await asyncio.wait_for(lst.stop(), GUARD)


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        Listener(UNREACHABLE, probe_interval=0)
    with pytest.raises(ValueError, match="backoff"):
        Listener(UNREACHABLE, backoff_initial=1.0, backoff_max=0.5)


# -- helpers -----------------------------------------------------------------------------


async def _true(value: bool) -> bool:
    return value


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


class TcpProxy:
    """A TCP proxy in front of the test Postgres, to fake network trouble.

    ``blackhole_open_connections()`` makes the current connections swallow all
    traffic while their sockets stay open (a peer that silently vanished);
    ``refuse`` cuts new connections at once (a database that is down).
    """

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        query = dict(parse_qsl(parts.query))
        host = query.pop("host", None) or parts.hostname or "localhost"
        port = int(query.pop("port", None) or parts.port or 5432)
        # A host starting with "/" is a Unix-socket directory (the embedded server).
        self._unix_path = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._target = (host, port)
        self._parts = parts._replace(query=urlencode(query))
        self._userinfo = parts.netloc.rpartition("@")[0]
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self.refuse = False
        self.url = ""

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        netloc = f"{self._userinfo}@127.0.0.1:{port}" if self._userinfo else f"127.0.0.1:{port}"
        self.url = urlunsplit(self._parts._replace(netloc=netloc))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for link in self._links:
            link.close()
        await asyncio.gather(*(link.closed() for link in self._links))
        await self._server.wait_closed()

    def blackhole_open_connections(self) -> None:
        for link in self._links:
            link.blackholed = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        if self._unix_path is not None:
            up_reader, up_writer = await asyncio.open_unix_connection(self._unix_path)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        link = _Link(writer, up_writer)
        self._links.append(link)
        await asyncio.gather(link.pipe(reader, up_writer), link.pipe(up_reader, writer))
        link.close()
        await link.closed()


class _Link:
    """One proxied connection: client <-> server."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.writers = (client, server)
        self.blackholed = False

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.blackholed:
                    continue  # swallowed: the other side hears nothing, ever
                writer.write(data)
                await writer.drain()
        # One side hung up: hang up the other, as a real network path would.
        writer.close()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    async def closed(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

"""The component's public seams for looking inside: ``stats()``, ``live_stream()``,
``live_streams()``, and the reads the routes build on (``subscribe_text``, ``body_pages``).

Each runs on the asyncpg and psycopg stores and on ``pts.testing.MemoryStore``
(the ``[memory]`` runs of the ``store`` fixture, see ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import cast

import pytest

import pts as package
from pts import Append, LiveStream, PersistentTextStreaming, Stats, StreamStatus, Update, driving
from pts import driver as old_driver
from pts.driving import AnyRequest
from pts.store import Store
from pts.testing import MemoryStore

NO_REQUEST = cast("AnyRequest", None)  # driven outside an HTTP request, as a script would


@pytest.fixture
async def component(
    store: Store, store_url: str | None, driver: str
) -> AsyncIterator[PersistentTextStreaming]:
    """A component on this run's store: the memory store itself, or the run's database."""
    if isinstance(store, MemoryStore):
        instance = PersistentTextStreaming(store=store, sweeper=False, read_page_bytes=8)
    else:
        instance = PersistentTextStreaming(
            dsn=store_url,
            driver=driver,  # type: ignore[arg-type]
            sweeper=False,
            read_page_bytes=8,
        )
    async with instance:
        yield instance


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a hang guard, not a timing assertion)."""
    async with asyncio.timeout(20):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def test_stats_follow_a_stream_as_it_is_driven_and_watched(
    component: PersistentTextStreaming,
) -> None:
    pts = component
    idle = pts.stats()
    assert (idle.open, idle.stopping, idle.listener_connected) == (True, False, True)
    assert (idle.writers, idle.drives, idle.tails, idle.subscribers) == (0, 0, 0, 0)
    assert pts.live_streams() == []

    stream_id = await pts.create_stream()
    watcher = pts.subscribe(stream_id)
    first = await anext(watcher)  # subscribed: the catch-up read is done
    assert (first.text, first.status) == ("", StreamStatus.PENDING)
    watched = pts.stats()
    assert (watched.tails, watched.subscribers) == (1, 1)
    view = pts.live_stream(stream_id)
    assert view == LiveStream(stream_id, offset=0, subscribers=1, buffered_bytes=(0,), reads=0)
    assert pts.live_streams() == [view]

    release = asyncio.Event()

    async def generate(_request: AnyRequest, _stream_id: uuid.UUID, append: Append) -> None:
        await append("Hello there. ")
        await release.wait()
        await append("Bye.")

    response = await pts.stream(NO_REQUEST, stream_id, generate)
    driving = pts.stats()
    assert (driving.drives, driving.attached_drives, driving.writers) == (1, 1, 1)
    body = cast("AsyncGenerator[bytes, None]", response.iterator)
    assert await anext(body) == b"Hello there. "
    # The first sentence reaches the table; the tail reads it (once, for every watcher).
    seen: list[Update] = []
    while "".join(u.text for u in seen) != "Hello there. ":
        seen.append(await anext(watcher))
    reading = pts.stats()
    assert reading.tail_reads > watched.tail_reads
    assert reading.notifications > watched.notifications
    live = pts.live_stream(stream_id)
    assert live is not None
    assert live.offset == len(b"Hello there. ")
    assert live.reads >= 1

    await body.aclose()  # the driving client goes away: generation goes on alone
    await until(lambda: pts.stats().attached_drives == 0, "the drive detached")
    assert pts.stats().drives == 1
    release.set()
    rest = [u async for u in watcher]
    assert "".join(u.text for u in [*seen, *rest]) == "Hello there. Bye."
    assert rest[-1].finished
    assert rest[-1].status is StreamStatus.DONE
    await until(lambda: pts.stats().drives == 0, "the drive ended")
    done = pts.stats()
    assert (done.writers, done.drives, done.tails, done.subscribers) == (0, 0, 0, 0)
    assert pts.live_stream(stream_id) is None
    # What the work did: the flusher's commits (what /metrics shows), one flush
    # observed per commit, and the watcher's deliveries after notifications.
    assert (idle.appends, idle.bytes_persisted, idle.flush_seconds.count) == (0, 0, 0)
    assert done.appends >= 2  # the first sentence, then the rest with the status
    assert done.bytes_persisted == len(b"Hello there. Bye.")
    assert done.flush_seconds.count == done.flush_bytes.count == done.appends
    assert done.flush_bytes.sum == done.bytes_persisted
    assert done.delivery_seconds.count >= 1
    assert (done.database_errors, done.outage_retries) == (0, 0)


async def test_stats_of_a_writer_and_after_close(component: PersistentTextStreaming) -> None:
    pts = component
    writer = await pts.create_write_stream()
    assert pts.stats().writers == 1
    await writer.write("Some text.")
    await writer.close()
    assert pts.stats().writers == 0
    await pts.close()
    closed = pts.stats()
    assert isinstance(closed, Stats)
    assert (closed.open, closed.listener_connected, closed.tails) == (False, False, 0)
    assert closed.notifications > 0  # totals stay readable after close
    assert pts.live_streams() == []
    assert pts.live_stream(writer.stream_id) is None


async def test_subscribe_text_tells_silence_from_the_end(
    component: PersistentTextStreaming,
) -> None:
    pts = component
    writer = await pts.create_write_stream(metadata={"t": "idle"})
    updates = pts.subscribe_text(writer.stream_id, idle=0.01)
    first = await anext(updates)
    assert first is not None
    assert first.text == ""
    assert await anext(updates) is None  # silence: a keep-alive's turn, not the end
    await writer.write("Done now.")
    await writer.close()
    texts: list[str] = []
    async for update in updates:
        if update is not None:
            texts.append(update.text)
            last = update
    assert "".join(texts) == "Done now."
    assert last.finished
    assert last.status is StreamStatus.DONE
    # Without idle it is subscribe(): the same updates, never None.
    plain = [u async for u in pts.subscribe_text(writer.stream_id)]
    assert plain == [u async for u in pts.subscribe(writer.stream_id)]
    assert None not in plain


async def test_body_pages_reads_a_long_text_in_pages(component: PersistentTextStreaming) -> None:
    pts = component
    text = "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. 🌍"
    writer = await pts.create_write_stream()
    await writer.write(text)
    await writer.close()
    info = await pts.get_stream(writer.stream_id)
    body = await pts.body_pages(info)
    assert body.whole is None  # longer than read_page_bytes (8): read in pages
    assert (body.stream.size, body.stream.status) == (len(text.encode()), StreamStatus.DONE)
    pieces = [piece async for piece in body.texts()]
    assert len(pieces) > 1
    assert "".join(pieces) == text
    assert (await pts.get_stream_body(writer.stream_id)).text == text

    short = await pts.create_write_stream()
    await short.write("Hi.")
    await short.close()
    small = await pts.body_pages(await pts.get_stream(short.stream_id))
    assert small.whole == "Hi."
    assert (await small.collect()).text == "Hi."


def test_the_old_driver_module_still_exports_its_names() -> None:
    """``pts.driver`` is the old path of ``pts.driving``: the same objects."""
    for name in old_driver.__all__:
        assert getattr(old_driver, name) is (
            getattr(package, name) if name == "StreamWriter" else getattr(driving, name)
        ), name
    assert package.Append is driving.Append
    assert package.SHUTDOWN_MESSAGE == driving.SHUTDOWN_MESSAGE
    assert package.Generate is driving.Generate

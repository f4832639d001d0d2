"""Bounds on streams: the size cap, the pending timeout, text Postgres cannot hold, and the
driving response's content type whatever the handler's return annotation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, MediaType, Request, Response, post
from litestar.params import FromPath
from litestar.response import Stream

from pts import Append, InvalidInput, PersistentTextStreaming, PTSPlugin, StreamStatus
from pts.errors import StreamTooLarge
from pts.live.subscribe import Update
from pts.plugin import allow_everything
from pts.settings import Driver
from pts.store import DEFAULT_MAX_STREAM_SIZE, SQLStore, create_store
from pts.store.base import pending_timeout_message
from tests.support.servers import serve_app

S = StreamStatus
AnyRequest = Request[Any, Any, Any]


async def finished(pts: PersistentTextStreaming, stream_id: uuid.UUID) -> Update:
    """The update that finishes the stream, as a subscriber sees it."""
    async for update in pts.subscribe(stream_id):
        if update.finished:
            return update
    raise AssertionError("the subscription ended before the stream finished")


@pytest.fixture
async def capped_store(db_url: str, driver: Driver) -> AsyncIterator[SQLStore]:
    store = create_store(db_url, driver, max_size=30, max_stream_size=10)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- the size cap, in the store (both drivers) ----------------------------------------------


async def test_default_cap_is_one_gib(store: SQLStore) -> None:
    assert store.max_stream_size == DEFAULT_MAX_STREAM_SIZE == 1024**3


async def test_append_that_would_pass_the_cap_stores_nothing(capped_store: SQLStore) -> None:
    store = capped_store
    sid = (await store.create_stream(status=S.STREAMING)).id
    size = await store.append(sid, b"123456", offset=0)
    with pytest.raises(StreamTooLarge) as caught:
        await store.append(sid, b"78901", offset=size)
    assert (caught.value.size, caught.value.adding, caught.value.limit) == (6, 5, 10)
    assert "cap of 10 bytes" in str(caught.value)
    assert (await store.read(sid)).data == b"123456"
    size = await store.append(sid, b"7890", offset=size, finish=S.DONE)
    assert size == 10
    assert (await store.read(sid)).data == b"1234567890"


async def test_protocol_append_that_would_pass_the_cap_stores_nothing(
    capped_store: SQLStore,
) -> None:
    store = capped_store
    with pytest.raises(StreamTooLarge):
        await store.ds_create("big", content_type="text/plain", data=b"x" * 11)
    await store.ds_create("p", content_type="text/plain", data=b"123456")
    with pytest.raises(StreamTooLarge) as caught:
        await store.ds_append("p", b"78901", media_type="text/plain")
    assert caught.value.size == 6
    result = await store.ds_append("p", b"7890", media_type="text/plain", close=True)
    assert result.size == 10
    found = await store.ds_lookup("p")
    assert found is not None
    assert (await store.read(found.stream.id)).data == b"1234567890"


async def test_concurrent_protocol_appends_cannot_pass_the_cap_together(
    capped_store: SQLStore,
) -> None:
    store = capped_store
    await store.ds_create("p", content_type="text/plain")
    results = await asyncio.gather(
        *(store.ds_append("p", b"ab", media_type="text/plain") for _ in range(20)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 5
    assert all(isinstance(r, StreamTooLarge) for r in results if isinstance(r, BaseException))
    found = await store.ds_lookup("p")
    assert found is not None
    assert found.stream.size == 10


async def test_no_cap_when_none(db_url: str, driver: Driver) -> None:
    store = create_store(db_url, driver, max_stream_size=None)
    await store.open()
    try:
        sid = (await store.create_stream(status=S.STREAMING)).id
        assert await store.append(sid, b"x" * 100_000, offset=0) == 100_000
    finally:
        await store.close()


# -- the size cap, for writers and driven streams ------------------------------------------


async def test_writer_write_past_the_cap_raises_and_buffers_nothing(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url, max_stream_size=20) as pts:
        writer = await pts.create_write_stream()
        await writer.write("123456789012345")
        with pytest.raises(StreamTooLarge):
            await writer.write("6789012345")
        await writer.write("67890")
        await writer.close()
        body = await pts.get_stream_body(writer.stream_id)
        assert body.text == "12345678901234567890"
        assert body.status is S.DONE


async def drain(client: httpx.AsyncClient, path: str) -> tuple[int, bytes, bool]:
    """POST ``path`` and read the body: (status, bytes received, whether it was cut off)."""
    received = b""
    async with client.stream("POST", path) as response:
        try:
            async for chunk in response.aiter_raw():
                received += chunk
        except httpx.RemoteProtocolError:
            return response.status_code, received, True
        return response.status_code, received, False


async def test_cap_met_in_the_database_ends_the_writers_stream_error(db_url: str) -> None:
    # The writer's own check passes; the append statement's check (the one
    # concurrent writers cannot pass together) refuses: the stream ends 'error'.
    async with PersistentTextStreaming(dsn=db_url, max_stream_size=1000) as pts:
        writer = await pts.create_write_stream()
        end = asyncio.create_task(finished(pts, writer.stream_id))
        pts.store.max_stream_size = 5
        await writer.write("More than five bytes.\n")
        update = await asyncio.wait_for(end, 20)
        assert update.status is S.ERROR
        info = await pts.get_stream(writer.stream_id)
        assert info.error is not None
        assert "cap of 5 bytes" in info.error
        assert info.size == 0
        with pytest.raises(StreamTooLarge):
            await writer.write("more")


async def collect(response: Stream, into: list[bytes]) -> None:
    """Iterate a driving response's body in-process, as the server would."""
    async for chunk in response.iterator:  # type: ignore[union-attr]
        into.append(chunk if isinstance(chunk, bytes) else chunk.encode())


def drive_app(pts: PersistentTextStreaming, tokens: list[str]) -> Litestar:
    @post("/drive/{stream_id:uuid}")
    async def drive(request: AnyRequest, stream_id: FromPath[uuid.UUID]) -> Response[Any]:
        async def generate(_r: AnyRequest, _s: uuid.UUID, append: Append) -> None:
            for token in tokens:
                await append(token)

        return await pts.stream(request, stream_id, generate)

    return Litestar([drive], plugins=[PTSPlugin(pts, authorize=allow_everything)])


async def test_driven_stream_past_the_cap_ends_error_and_cuts_the_response(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url, max_stream_size=20)
    async with serve_app(drive_app(pts, ["0123456789", "0123456789", "x", "never"])) as url:
        sid = await pts.create_stream()
        end = asyncio.create_task(finished(pts, sid))
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            status, received, cut = await drain(client, f"/drive/{sid}")
        assert status == 200
        assert cut, "the response of an incomplete answer must be cut off"
        assert received == b"01234567890123456789"
        update = await asyncio.wait_for(end, 20)
        assert update.status is S.ERROR
        info = await pts.get_stream(sid)
        assert info.error is not None
        assert "cap of 20 bytes" in info.error
        assert (await pts.get_stream_body(sid)).text == "01234567890123456789"


async def test_cap_met_in_the_database_cuts_the_driving_response(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url, max_stream_size=1000) as pts:
        gate = asyncio.Event()

        async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
            # The writer checked against 1000 when it was made; the database now says 5.
            pts.store.max_stream_size = 5
            await append("More than five bytes.\n")
            await gate.wait()  # cancelled when persisting fails

        sid = await pts.create_stream()
        end = asyncio.create_task(finished(pts, sid))
        response = await pts.stream(None, sid, generate)  # type: ignore[arg-type]
        received: list[bytes] = []
        with pytest.raises(StreamTooLarge):
            await collect(response, received)
        assert b"".join(received) == b"More than five bytes.\n"
        assert (await asyncio.wait_for(end, 20)).status is S.ERROR
        error = (await pts.get_stream(sid)).error
        assert error is not None
        assert "cap of 5 bytes" in error


async def test_protocol_append_past_the_cap_is_413(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url, max_stream_size=10)
    app = Litestar(plugins=[PTSPlugin(pts, authorize=allow_everything)])
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
    ):
        headers = {"content-type": "text/plain"}
        assert (await client.put("/v1/stream/p", headers=headers)).status_code == 201
        assert (await client.post("/v1/stream/p", content=b"123456", headers=headers)).is_success
        refused = await client.post("/v1/stream/p", content=b"78901", headers=headers)
        assert refused.status_code == 413
        assert refused.json()["error"] == "stream_too_large"
        head = await client.head("/v1/stream/p")
        assert head.headers["stream-next-offset"].endswith("6")
        big = await client.put("/v1/stream/q", content=b"x" * 11, headers=headers)
        assert big.status_code == 413


# -- text Postgres cannot hold -------------------------------------------------------------


async def test_writer_refuses_lone_surrogates_and_the_stream_goes_on(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url) as pts:
        writer = await pts.create_write_stream()
        await writer.write("Before. ")
        with pytest.raises(InvalidInput, match="surrogate"):
            await writer.write("bad \ud800 text")
        await writer.write("After.")
        with pytest.raises(InvalidInput):
            await writer.abort("why \x00")
        await writer.close()
        body = await pts.get_stream_body(writer.stream_id)
        assert body.text == "Before. After."
        assert body.status is S.DONE


async def test_driven_append_of_a_lone_surrogate_is_invalid_input(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url) as pts:
        caught: list[BaseException] = []

        async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
            await append("Fine. ")
            try:
                await append("\udc80")
            except InvalidInput as exc:
                caught.append(exc)
            await append("Still fine.")

        sid = await pts.create_stream()
        end = asyncio.create_task(finished(pts, sid))
        response = await pts.stream(None, sid, generate)  # type: ignore[arg-type]
        assert isinstance(response, Stream)
        update = await asyncio.wait_for(end, 20)
        assert update.status is S.DONE
        assert len(caught) == 1
        assert (await pts.get_stream_body(sid)).text == "Fine. Still fine."


async def test_generator_error_with_a_nul_still_ends_the_stream(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url) as pts:

        async def generate(_r: object, _s: uuid.UUID, append: Append) -> None:
            await append("Some text.")
            raise RuntimeError("upstream said \x00 and \ud800")

        sid = await pts.create_stream()
        end = asyncio.create_task(finished(pts, sid))
        await pts.stream(None, sid, generate)  # type: ignore[arg-type]
        assert (await asyncio.wait_for(end, 20)).status is S.ERROR
        info = await pts.get_stream(sid)
        assert info.error == "upstream said \ufffd and \ufffd"


async def test_cancel_with_a_reason_postgres_cannot_store_changes_nothing(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url) as pts:
        sid = await pts.create_stream()
        with pytest.raises(InvalidInput):
            await pts.cancel(sid, reason="no\x00")
        assert (await pts.get_stream(sid)).status is S.PENDING


# -- the pending timeout ---------------------------------------------------------------------


@pytest.mark.postgres_only(reason="creates a Durable Streams protocol stream")
async def test_timeout_pending_ends_only_unclaimed_pts_streams(store: SQLStore) -> None:
    pending = await store.create_stream()
    streaming = await store.create_stream(status=S.STREAMING)
    await store.ds_create("protocol", content_type="text/plain")
    assert await store.timeout_pending(3600) == []
    swept = await store.timeout_pending(0)
    assert [s.id for s in swept] == [pending.id]
    info = await store.get_stream(pending.id)
    assert info.status is S.TIMEOUT
    assert info.closed
    assert info.error == pending_timeout_message(0)
    assert (await store.get_stream(streaming.id)).status is S.STREAMING
    protocol = await store.ds_lookup("protocol")
    assert protocol is not None
    assert protocol.stream.status is S.PENDING


async def test_sweeper_times_out_a_pending_stream_and_its_subscribers_end(db_url: str) -> None:
    async with PersistentTextStreaming(dsn=db_url, pending_timeout=0.2, sweep_interval=0.05) as pts:
        # A protocol stream, older than the pts stream: any sweep that ends the
        # pts stream would have ended it too, were it eligible.
        await pts.store.ds_create("protocol", content_type="text/plain")
        sid = await pts.create_stream()
        update = await asyncio.wait_for(finished(pts, sid), 20)
        assert update.status is S.TIMEOUT
        info = await pts.get_stream(sid)
        assert info.error == pending_timeout_message(0.2)
        protocol = await pts.store.ds_lookup("protocol")
        assert protocol is not None
        assert protocol.stream.status is S.PENDING
        # A driven stream is not pending: the sweeper leaves it alone.
        writer = await pts.create_write_stream()
        await asyncio.wait_for(finished(pts, (await pts.create_stream())), 20)
        assert (await pts.get_stream(writer.stream_id)).status is S.STREAMING
        await writer.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_stream_size"):
        PersistentTextStreaming(max_stream_size=0)
    with pytest.raises(ValueError, match="pending_timeout"):
        PersistentTextStreaming(pending_timeout=0)
    with pytest.raises(ValueError, match="pending_timeout"):
        PersistentTextStreaming(pending_timeout=float("inf"))


# -- the driving response's content type -----------------------------------------------------


def annotated_app(pts: PersistentTextStreaming) -> Litestar:
    async def generate(_r: AnyRequest, _s: uuid.UUID, append: Append) -> None:
        for token in ("Hello", ", ", "world."):
            await append(token)

    @post("/object/{stream_id:uuid}")
    async def as_object(request: AnyRequest, stream_id: FromPath[uuid.UUID]) -> object:
        return await pts.stream(request, stream_id, generate)

    @post("/any/{stream_id:uuid}")
    async def as_any(request: AnyRequest, stream_id: FromPath[uuid.UUID]) -> Any:
        return await pts.stream(request, stream_id, generate)

    @post("/response/{stream_id:uuid}")
    async def as_response(request: AnyRequest, stream_id: FromPath[uuid.UUID]) -> Response[Any]:
        return await pts.stream(request, stream_id, generate)

    @post("/stream/{stream_id:uuid}")
    async def as_stream(request: AnyRequest, stream_id: FromPath[uuid.UUID]) -> Stream:
        return await pts.stream(request, stream_id, generate)

    @post("/union/{stream_id:uuid}")
    async def as_union(
        request: AnyRequest, stream_id: FromPath[uuid.UUID]
    ) -> Stream | dict[str, str]:
        return await pts.stream(request, stream_id, generate)

    @post("/json/{stream_id:uuid}", media_type=MediaType.JSON)
    async def as_json(request: AnyRequest, stream_id: FromPath[uuid.UUID]) -> Stream:
        return await pts.stream(request, stream_id, generate)

    handlers = [as_object, as_any, as_response, as_stream, as_union, as_json]
    return Litestar(handlers, plugins=[PTSPlugin(pts, authorize=allow_everything)])


@pytest.mark.parametrize("route", ["object", "any", "response", "stream", "union", "json"])
async def test_driving_response_is_text_whatever_the_annotation(db_url: str, route: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url)
    async with (
        serve_app(annotated_app(pts)) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
    ):
        sid = await pts.create_stream()
        response = await client.post(f"/{route}/{sid}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.text == "Hello, world."
        assert response.headers["x-pts-stream-id"] == str(sid)

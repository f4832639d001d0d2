"""``/metrics`` over real HTTP for what requests do: the Durable Streams protocol's
appends, and the 5xx answers pts gives (by their error kind)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get

from pts import PersistentTextStreaming, PTSPlugin
from pts.errors import StoreUnavailable
from pts.http.access import Action
from pts.models import StreamInfo
from tests.support.metrics import Scraper
from tests.support.servers import serve_app

FAIL = "x-test-fail"
"""A request with this header finds the authorize hook's own database down."""


def authorize(request: Request[Any, Any, Any], _action: Action, _stream: StreamInfo | None) -> bool:
    if FAIL in request.headers:
        raise StoreUnavailable("the app's user database is down")
    return True


@get("/broken")
async def broken() -> None:
    raise RuntimeError("a bug in the app's own route")


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[tuple[PersistentTextStreaming, Scraper]]:
    pts = PersistentTextStreaming(dsn=db_url, sweeper=False)
    app = Litestar([broken], plugins=[PTSPlugin(pts, authorize=authorize, metrics=True)])
    async with (
        serve_app(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        yield pts, Scraper(client)


async def test_the_protocols_appends_are_counted_once_each_with_their_bytes(
    served: tuple[PersistentTextStreaming, Scraper],
) -> None:
    pts, scraper = served
    client = scraper.client
    before = await scraper.scrape()
    assert before["pts_protocol_appends_total"] == 0
    assert before["pts_protocol_persisted_bytes_total"] == 0
    text = {"content-type": "text/plain"}
    url = "/v1/stream/metrics/counted"
    assert (await client.put(url, content=b"abc", headers=text)).status_code == 201
    assert (await client.put(url, content=b"abc", headers=text)).status_code == 200  # no append
    assert (await client.post(url, content=b"hello", headers=text)).status_code == 204
    producer = {**text, "producer-id": "p", "producer-epoch": "0", "producer-seq": "0"}
    assert (await client.post(url, content=b"xy", headers=producer)).status_code == 200
    assert (await client.post(url, content=b"xy", headers=producer)).status_code == 204  # dup
    closing = await client.post(url, headers={"stream-closed": "true"})
    assert closing.status_code == 204, closing.text
    refused = await client.post(url, content=b"late", headers=text)
    assert refused.status_code == 409, refused.text
    after = await scraper.scrape()
    # The PUT's first bytes, "hello", the producer's first "xy" and the close.
    assert after["pts_protocol_appends_total"] == 4
    assert after["pts_protocol_persisted_bytes_total"] == len(b"abc" + b"hello" + b"xy")
    assert after["pts_appends_total"] == 0  # the flushers' count is their own
    # One request at a time: each of the 5 POSTs (the refused one too) ran alone, as
    # its own transaction (the PUTs create, outside the append queue).
    transactions = after["pts_append_transactions_total"] - before["pts_append_transactions_total"]
    assert transactions == 5
    assert pts.stats().protocol_appends == 4
    read = await client.get(url, params={"offset": "-1"})
    assert read.content == b"abchelloxy"


async def test_five_hundreds_are_counted_by_their_error_kind(
    served: tuple[PersistentTextStreaming, Scraper],
) -> None:
    pts, scraper = served
    client = scraper.client
    before = await scraper.scrape()
    assert not [name for name in before if name.startswith("pts_request_failures_total")]
    fail = {FAIL: "1", "content-type": "text/plain"}
    # The Durable Streams app answers its own errors; the plugin's routes through
    # Litestar's handlers; an app's own route that crashes, through the 500 handler.
    protocol = await client.put("/v1/stream/metrics/failing", headers=fail)
    assert (protocol.status_code, protocol.json()["error"]) == (503, "store_unavailable")
    plugin_route = await client.post("/streams/", headers=fail)
    assert (plugin_route.status_code, plugin_route.json()["error"]) == (503, "store_unavailable")
    crashed = await client.get("/broken")
    assert (crashed.status_code, crashed.json()["error"]) == (500, "internal_error")
    # A 4xx is the client's, not the server's failure.
    assert (await client.get("/v1/stream/metrics/absent")).status_code == 404
    after = await scraper.scrape()
    assert after["pts_request_failures_total{error=store_unavailable}"] == 2
    assert after["pts_request_failures_total{error=internal_error}"] == 1
    failures = [name for name in after if name.startswith("pts_request_failures_total")]
    assert len(failures) == 2, failures
    assert pts.stats().request_failures == {"store_unavailable": 2, "internal_error": 1}

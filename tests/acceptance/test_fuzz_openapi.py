"""The plugin's routes driven from Litestar's own OpenAPI schema by schemathesis.

Every operation the schema describes gets valid and invalid requests (schemathesis's
positive and negative generation), sent over real sockets to a real ``pts serve``;
the check is ``not_a_server_error`` (no 5xx). The Durable Streams protocol is an
ASGI mount, which the schema does not describe: the protocol fuzz tests cover it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from pts import PersistentTextStreaming
from pts.http.app import create_app
from tests.support.fuzz import (
    ADMIN_TOKEN,
    EXPLORE,
    REQUESTS,
    fuzz_settings,
    pts_server,
    report,
    stream_id_of,
    violation,
)
from tests.support.postgres import DatabaseFactory
from tests.support.servers import ServerProcess

MODULE = "openapi"
existing: list[str] = []
"""Ids of streams that exist, for the operations that name one (filled at startup)."""


def plugin_schema() -> schemathesis.BaseSchema:
    """The OpenAPI schema of ``pts serve``'s app, as Litestar generates it (no server needed)."""
    app = create_app(
        PersistentTextStreaming(dsn="postgresql://127.0.0.1:1/unused", sweeper=False),
        no_auth=True,
    )
    return schemathesis.openapi.from_dict(app.openapi_schema.to_schema())


SCHEMA = plugin_schema()
OPERATIONS = {
    result.ok().label: result.ok()
    for result in SCHEMA.get_all_operations()
    if isinstance(result, Ok)  # an Err would be a schema schemathesis cannot read
}


@pytest.fixture(scope="module", params=["no-auth", "admin"])
def server(
    request: pytest.FixtureRequest, databases: DatabaseFactory
) -> Iterator[tuple[ServerProcess, str]]:
    dsn = databases.create()
    try:
        with pts_server(dsn, request.param) as running:
            auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
            existing.clear()
            with httpx.Client(base_url=running.url, headers=auth, timeout=10) as client:
                for _ in range(2):
                    existing.append(client.post("/streams").json()["id"])
                text = {"content-type": "text/plain"}
                assert client.put("/v1/stream/t", headers=text, content=b"Hi.").status_code == 201
                existing.append(str(stream_id_of(dsn, "t")))
            yield running, request.param
    finally:
        databases.drop(dsn)


def test_the_schema_describes_every_plugin_route() -> None:
    assert set(OPERATIONS) == {
        "POST /streams",
        "GET /streams/{stream_id}",
        "DELETE /streams/{stream_id}",
        "POST /streams/{stream_id}/cancel",
        "GET /streams/{stream_id}/events",
    }


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_operation(server: tuple[ServerProcess, str], label: str) -> None:
    running, mode = server
    module = f"{MODULE}[{mode}]"
    operation = OPERATIONS[label]
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"} if mode == "admin" else None
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if "{stream_id}" in label:  # also the streams that exist, or every id is a 404
        strategies += [
            operation.as_strategy(mode, path_parameters={"stream_id": stream_id})
            for stream_id in existing
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    strategy = st.one_of(*strategies)
    with requests.Session() as session:

        @fuzz_settings(max_examples=80)
        @given(case=strategy)
        def run(case: Any) -> None:
            REQUESTS[module] += 1
            # An SSE response never ends by itself: take its status, not its body.
            stream = label.endswith("/events")
            try:
                response = case.call(
                    base_url=running.url,
                    session=session,
                    headers=headers,
                    timeout=(5, 1 if stream else 10),
                    stream=stream,
                )
            except requests.RequestException as exc:
                violation(f"no response ({type(exc).__name__}) to {case.as_curl_command()}")
                return
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except AssertionError as exc:
                if not EXPLORE:
                    raise
                violation(f"{response.status_code} to {case.as_curl_command()}: {exc}")

        run()
    assert running.process.poll() is None, running.output()[-3000:]


def test_requests_sent(
    server: tuple[ServerProcess, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The number of requests schemathesis sent to this server."""
    with capsys.disabled():
        print("\n" + report(f"{MODULE}[{server[1]}]", minimum=200))

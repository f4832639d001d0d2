"""Fuzzing the plugin's routes (``/streams...``) of a real ``pts serve``.

One server per mode (``--no-auth``, and the admin token); the properties are in
:mod:`tests.support.fuzz`. A rejected create must not have created a row; a
rejected cancel or delete must leave the stream's view as it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzz import (
    ADMIN_TOKEN,
    CONTENT_TYPES,
    PATHOLOGICAL_JSON,
    Fuzzer,
    as_bytes,
    authorization,
    bodies,
    check_unchanged,
    fuzz_settings,
    header_text,
    integers_as_text,
    json_values,
    junk_paths,
    keep_log,
    long_text,
    long_texts,
    merged,
    optional,
    plugin_snapshot,
    pts_server,
    quoted,
    report,
    stream_id_of,
)
from tests.support.postgres import DatabaseFactory

MODULE = "plugin"
pool_ids: list[str] = []
"""Existing streams: pending ones, and protocol streams with text (filled at startup)."""
dsns: dict[str, str] = {}


@pytest.fixture(scope="module", params=["no-auth", "admin"])
def fuzzer(request: pytest.FixtureRequest, databases: DatabaseFactory) -> Iterator[Fuzzer]:
    dsn = databases.create()
    mode: str = request.param
    try:
        with pts_server(dsn, mode) as server:
            auth = {"authorization": f"Bearer {ADMIN_TOKEN}"} if mode == "admin" else {}
            fuzz = Fuzzer(server, f"{MODULE}[{mode}]", headers=auth)
            dsns[fuzz.module] = dsn
            try:
                pool_ids.clear()
                for _ in range(3):
                    created = fuzz.client.post("/streams", headers=auth)
                    assert created.status_code == 201, created.text
                    pool_ids.append(created.json()["id"])
                for path, content_type, body in [
                    ("text", "text/plain", "Héllo wörld. 你好 👩‍👩‍👧".encode()),
                    ("json", "application/json", b'[1, "two"]'),
                    ("closed", "text/plain", b"finished"),
                ]:
                    headers = {**auth, "content-type": content_type}
                    if path == "closed":
                        headers["stream-closed"] = "true"
                    put = fuzz.client.put(f"/v1/stream/{path}", headers=headers, content=body)
                    assert put.status_code == 201, put.text
                    pool_ids.append(str(stream_id_of(dsn, path)))
                yield fuzz
                fuzz.sanity()
                keep_log(server, f"{MODULE}-{mode}")
            finally:
                fuzz.close()
    finally:
        databases.drop(dsn)


def stream_ids() -> st.SearchStrategy[str]:
    """A path segment naming a stream: an existing one, a random UUID, or junk."""
    return st.one_of(
        st.builds(lambda i: pool_ids[i % len(pool_ids)], st.integers(0, 100)),
        st.builds(lambda i: pool_ids[i % len(pool_ids)].upper(), st.integers(0, 100)),
        st.uuids().map(str),
        st.uuids().map(lambda u: u.hex),
        st.sampled_from(["%00", "a%0ab", "%ZZ", "00000000-0000-0000-0000-00000000000%00"]),
        long_texts((300, 5000)),
        junk_paths(),
    )


def row_count(fuzzer: Fuzzer) -> int:
    with psycopg.connect(dsns[fuzzer.module]) as conn:
        row = conn.execute("SELECT count(*) FROM pts.streams").fetchone()
    assert row is not None
    return int(row[0])


def texts() -> st.SearchStrategy[Any]:
    """What a client might put where the API expects a string."""
    return st.one_of(
        st.text(max_size=30),
        st.sampled_from(["a\x00b", "\x00", "\ud800", "line\nbreak", "", " "]),
        long_texts((300, 3000, 9000)),
        json_values(),
    )


@st.composite
def create_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(bodies())
    if kind == 1:
        return draw(PATHOLOGICAL_JSON)
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["client_id"] = draw(texts())
    if draw(st.booleans()):
        fields["metadata"] = draw(
            st.one_of(
                json_values(),
                st.dictionaries(texts().filter(lambda t: isinstance(t, str)), texts(), max_size=4),
            )
        )
    if draw(st.integers(0, 4)) == 0:
        fields[draw(st.text(max_size=8))] = draw(json_values())
    text = json.dumps(fields)
    if kind == 3 and fields:  # embed a pathological value raw
        text = text[:-1] + ', "metadata": ' + draw(PATHOLOGICAL_JSON).decode("latin-1") + "}"
    return text.encode("utf-8", "surrogatepass")


@fuzz_settings(max_examples=200)
@given(
    auth=authorization(),
    content_type=optional("content-type", as_bytes(CONTENT_TYPES)),
    body=st.one_of(st.just(b""), create_bodies()),
)
def test_creates(
    fuzzer: Fuzzer, auth: dict[str, bytes], content_type: dict[str, bytes], body: bytes
) -> None:
    fuzzer.example()
    before = row_count(fuzzer)
    response = fuzzer.send("POST", "/streams", headers={**content_type, **auth}, content=body)
    check_unchanged(before, row_count(fuzzer), response)


@fuzz_settings(max_examples=250)
@given(
    route=st.sampled_from(["", "", "/events", "/events", "/cancel", "/x", "/events/"]),
    method=st.sampled_from(["GET", "GET", "GET", "HEAD"]),
    stream_id=stream_ids(),
    offset=st.one_of(st.none(), integers_as_text()),
    format=st.one_of(st.none(), st.sampled_from(["text", "html", "json", ""])),
    auth=authorization(),
    headers=merged(optional("last-event-id", as_bytes(integers_as_text()))),
)
def test_reads(
    fuzzer: Fuzzer,
    route: str,
    method: str,
    stream_id: str,
    offset: str | None,
    format: str | None,
    auth: dict[str, bytes],
    headers: dict[str, bytes],
) -> None:
    fuzzer.example()
    params = {k: v for k, v in (("offset", offset), ("format", format)) if v is not None}
    query = "&".join(f"{k}={quoted(v)}" for k, v in params.items())
    url = f"/streams/{stream_id}{route}" + (f"?{query}" if query else "")
    fuzzer.send(method, url, headers={**headers, **auth}, stream_first_bytes="/events" in route)


@fuzz_settings(max_examples=200)
@given(
    own=st.booleans(),
    action=st.sampled_from(
        [("POST", "/cancel"), ("POST", "/cancel"), ("DELETE", ""), ("PUT", ""), ("PATCH", "")]
    ),
    stream_id=stream_ids(),
    auth=authorization(),
    content_type=optional("content-type", as_bytes(CONTENT_TYPES)),
    body=st.one_of(
        st.just(b""),
        texts().map(lambda r: json.dumps({"reason": r}).encode("utf-8", "surrogatepass")),
        bodies(),
    ),
    extra=merged(optional("x-junk", header_text())),
)
def test_cancels_and_deletes(
    fuzzer: Fuzzer,
    own: bool,
    action: tuple[str, str],
    stream_id: str,
    auth: dict[str, bytes],
    content_type: dict[str, bytes],
    body: bytes,
    extra: dict[str, bytes],
) -> None:
    fuzzer.example()
    if own:  # a pending stream of this example's own
        created = fuzzer.send("POST", "/streams", headers=fuzzer.headers)
        assert created is not None
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
    method, route = action
    view = f"/streams/{stream_id}"
    before = plugin_snapshot(fuzzer, view)
    response = fuzzer.send(
        method, view + route, headers={**content_type, **extra, **auth}, content=body
    )
    check_unchanged(before, plugin_snapshot(fuzzer, view), response)


# -- the families found on the way --------------------------------------------------------

LONG = long_text(10, 3100)
"""3,100 random characters (they compress badly): too long for a b-tree index key."""
DEEP = b"[" * 5000 + b"]" * 5000
JSON = {"content-type": "application/json"}
CREATE_FAMILIES: list[bytes] = [
    b'{"client_id": "a\\u0000b"}',  # NUL: text columns cannot hold it
    b'{"metadata": {"a": "\\u0000"}}',  # nor can jsonb
    b'{"metadata": {"\\u0000": 1}}',
    b'{"client_id": "' + LONG.encode() + b'"}',  # too long for the unique index
    DEEP,  # the JSON decoder's recursion limit
    b'{"metadata": ' + DEEP + b"}",
    b'{"metadata": {"a": "\\ud800"}}',
]
"""Bodies of ``POST /streams`` (each also sent without credentials in admin mode)."""
STREAM_FAMILIES: list[tuple[str, str, dict[str, str], bytes]] = [
    # Numbers out of range: an offset or Last-Event-ID past what Postgres counts to.
    ("GET", "/events?offset=99999999999999999999", {}, b""),
    ("GET", "/events?offset=9223372036854775808", {}, b""),
    ("GET", "/events", {"last-event-id": "99999999999999999999"}, b""),
    ("GET", "/events", {"last-event-id": "9" * 5000}, b""),
    ("GET", "/events?offset=" + "9" * 5000, {}, b""),
    # A NUL in a reason; pathological JSON in a reason.
    ("POST", "/cancel", JSON, b'{"reason": "a\\u0000b"}'),
    ("POST", "/cancel", JSON, DEEP),
    ("POST", "/cancel", JSON, b'{"reason": "\\ud800"}'),
]
"""Requests on a stream of the test's own: (method, route under /streams/{id}, headers, body)."""


def test_known_families(fuzzer: Fuzzer) -> None:
    """Each family of failures the fuzzer found, as a fixed request: whatever the
    generator happens to draw, each stays covered (same properties)."""
    fuzzer.example()
    anonymous = {"authorization": "Bearer wrong"} if fuzzer.headers else {}
    for body in CREATE_FAMILIES:
        for auth in [fuzzer.headers, anonymous] if anonymous else [fuzzer.headers]:
            before = row_count(fuzzer)
            response = fuzzer.send("POST", "/streams", headers={**JSON, **auth}, content=body)
            check_unchanged(before, row_count(fuzzer), response)
    for method, route, headers, body in STREAM_FAMILIES:
        created = fuzzer.send("POST", "/streams", headers=fuzzer.headers)
        assert created is not None
        view = f"/streams/{created.json()['id']}"
        seen = plugin_snapshot(fuzzer, view)
        response = fuzzer.send(
            method,
            view + route,
            headers={**headers, **fuzzer.headers},
            content=body,
            stream_first_bytes="/events" in route,
        )
        check_unchanged(seen, plugin_snapshot(fuzzer, view), response)


def test_unknown_ids_are_404_not_500(fuzzer: Fuzzer) -> None:
    """A fixed smoke check next to the generated ones: an unknown id is a clean 404."""
    response = fuzzer.send("GET", f"/streams/{uuid.uuid4()}", headers=fuzzer.headers)
    assert response is not None
    assert response.status_code == 404


def test_requests_sent(fuzzer: Fuzzer, capsys: pytest.CaptureFixture[str]) -> None:
    """The number of requests sent to this server (runs after the others that use it)."""
    with capsys.disabled():
        print("\n" + report(fuzzer.module, minimum=500))

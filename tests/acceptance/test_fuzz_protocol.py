"""Fuzzing the Durable Streams protocol (``/v1/stream/...``) of a real ``pts serve``.

One server per mode (``--no-auth``, and the admin token), generated requests over
real sockets; the properties are in :mod:`tests.support.fuzz`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzz import (
    ADMIN_TOKEN,
    CONTENT_TYPES,
    Fuzzer,
    as_bytes,
    authorization,
    bodies,
    check_unchanged,
    describe,
    fuzz_settings,
    header_text,
    integers_as_text,
    junk_paths,
    keep_log,
    long_text,
    long_texts,
    merged,
    optional,
    protocol_offsets,
    protocol_snapshot,
    report,
    strict_json,
    timestamps,
    violation,
)
from tests.support.postgres import DatabaseFactory

MODULE = "protocol"
MOUNT = "/v1/stream"

POOL = {
    "fuzz/text": ({"content-type": "text/plain"}, "Héllo wörld. 你好".encode()),
    "fuzz/json": ({"content-type": "application/json"}, b'[1, {"a": [2]}, "three"]'),
    "fuzz/bin": ({"content-type": "application/octet-stream"}, bytes(range(256))),
    "fuzz/closed": ({"content-type": "text/plain", "stream-closed": "true"}, b"done"),
    "fuzz/ttl": ({"content-type": "text/plain", "stream-ttl": "3600"}, b"lives an hour"),
    "fuzz/expires": (
        {"content-type": "text/plain", "stream-expires-at": "2099-01-01T00:00:00Z"},
        b"lives long",
    ),
    "fuzz/fork": ({"stream-forked-from": "fuzz/text"}, b""),
}
pool_paths: list[str] = list(POOL)
"""Filled with ``pts/<id>`` of a pts stream once the server runs."""


@pytest.fixture(scope="module", params=["no-auth", "admin"])
def fuzzer(request: pytest.FixtureRequest, databases: DatabaseFactory) -> Iterator[Fuzzer]:
    from tests.support.fuzz import pts_server

    dsn = databases.create()
    mode: str = request.param
    try:
        with pts_server(dsn, mode) as server:
            auth = {"authorization": f"Bearer {ADMIN_TOKEN}"} if mode == "admin" else {}
            fuzz = Fuzzer(server, f"{MODULE}[{mode}]", headers=auth)
            try:
                for path, (headers, body) in POOL.items():
                    created = fuzz.client.put(
                        f"{MOUNT}/{path}", headers={**auth, **headers}, content=body
                    )
                    assert created.status_code == 201, (path, created.text)
                created = fuzz.client.post("/streams", headers=auth)
                assert created.status_code == 201, created.text
                pts_path = f"pts/{created.json()['id']}"
                if pts_path not in pool_paths:
                    pool_paths.append(pts_path)
                yield fuzz
                fuzz.sanity()
                keep_log(server, f"{MODULE}-{mode}")
            finally:
                fuzz.close()
    finally:
        databases.drop(dsn)


def paths() -> st.SearchStrategy[str]:
    """A pool stream (by ``sampled_from`` at draw time), a fresh path, or junk."""
    return st.one_of(
        st.builds(lambda i: pool_paths[i % len(pool_paths)], st.integers(0, 100)),
        st.uuids().map(lambda u: f"fuzz/new/{u}"),
        junk_paths(),
    )


# -- GET and HEAD --------------------------------------------------------------------


@st.composite
def queries(draw: st.DrawFn) -> str:
    params: list[tuple[str, str]] = []
    if draw(st.integers(0, 4)):
        params.append(("offset", draw(protocol_offsets())))
    live = draw(st.sampled_from([None, None, "long-poll", "sse", "", "poll", "SSE"]))
    if live is not None:
        params.append(("live", live))
    if draw(st.integers(0, 3)) == 0:
        params.append(("cursor", draw(integers_as_text())))
    if draw(st.integers(0, 6)) == 0:
        params.append(draw(st.sampled_from(params or [("offset", "-1")])))  # given twice
    if draw(st.integers(0, 6)) == 0:
        params.append((draw(st.text(max_size=5)), draw(st.text(max_size=5))))
    from urllib.parse import urlencode

    return urlencode(params, safe="-_")


@fuzz_settings(max_examples=300)
@given(
    method=st.sampled_from(["GET", "GET", "GET", "HEAD"]),
    path=paths(),
    query=queries(),
    auth=authorization(),
    headers=merged(
        optional("if-none-match", header_text()),
        optional("last-event-id", as_bytes(integers_as_text())),
        optional("accept", st.just(b"text/event-stream")),
    ),
)
def test_reads(
    fuzzer: Fuzzer,
    method: str,
    path: str,
    query: str,
    auth: dict[str, bytes],
    headers: dict[str, bytes],
) -> None:
    fuzzer.example()
    url = f"{MOUNT}/{path}" + (f"?{query}" if query else "")
    fuzzer.send(method, url, headers={**headers, **auth}, stream_first_bytes="sse" in query)


# -- PUT -----------------------------------------------------------------------------


def fork_sources() -> st.SearchStrategy[bytes]:
    return as_bytes(
        st.one_of(
            st.builds(lambda i: pool_paths[i % len(pool_paths)], st.integers(0, 100)),
            st.builds(lambda i: f"{MOUNT}/{pool_paths[i % len(pool_paths)]}", st.integers(0, 100)),
            st.uuids().map(lambda u: f"pts/{u}"),
            st.text(max_size=30),
        )
    )


@fuzz_settings(max_examples=200)
@given(
    path=paths(),
    auth=authorization(),
    headers=merged(
        optional("content-type", as_bytes(CONTENT_TYPES)),
        optional("stream-ttl", as_bytes(integers_as_text())),
        optional("stream-expires-at", as_bytes(timestamps())),
        optional("stream-closed", st.sampled_from([b"true", b"false", b"TRUE", b"1", b""])),
        optional("stream-forked-from", fork_sources()),
        optional("stream-fork-offset", as_bytes(protocol_offsets())),
        optional("stream-fork-sub-offset", as_bytes(integers_as_text())),
    ),
    body=st.one_of(st.just(b""), bodies()),
)
def test_creates(
    fuzzer: Fuzzer, path: str, auth: dict[str, bytes], headers: dict[str, bytes], body: bytes
) -> None:
    fuzzer.example()
    url = f"{MOUNT}/{path}"
    before = protocol_snapshot(fuzzer, url)
    response = fuzzer.send("PUT", url, headers={**headers, **auth}, content=body)
    after = protocol_snapshot(fuzzer, url)
    check_unchanged(before, after, response)
    check_json_readable(fuzzer, url, after, response)


# -- POST ----------------------------------------------------------------------------


@fuzz_settings(max_examples=200)
@given(
    fresh=st.one_of(st.none(), CONTENT_TYPES.filter(bool)),
    path=paths(),
    auth=authorization(),
    headers=merged(
        st.one_of(
            as_bytes(CONTENT_TYPES).map(lambda v: {"content-type": v}),
            optional("content-type", header_text()),
        ),
        optional("stream-seq", as_bytes(st.one_of(integers_as_text(), long_texts()))),
        optional("producer-id", as_bytes(st.one_of(st.text(max_size=20), long_texts()))),
        optional("producer-epoch", as_bytes(integers_as_text())),
        optional("producer-seq", as_bytes(integers_as_text())),
        optional("stream-closed", st.sampled_from([b"true", b"false", b"yes"])),
    ),
    body=bodies(),
)
def test_appends(
    fuzzer: Fuzzer,
    fresh: str | None,
    path: str,
    auth: dict[str, bytes],
    headers: dict[str, bytes],
    body: bytes,
) -> None:
    fuzzer.example()
    if fresh is not None:  # a stream of this example's own, of that content type
        path = f"fuzz/append/{uuid.uuid4()}"
        created = fuzzer.send(
            "PUT", f"{MOUNT}/{path}", headers={**fuzzer.headers, "content-type": fresh}
        )
        assert created is None or created.status_code == 201, created.text
    url = f"{MOUNT}/{path}"
    before = protocol_snapshot(fuzzer, url)
    response = fuzzer.send("POST", url, headers={**headers, **auth}, content=body)
    after = protocol_snapshot(fuzzer, url)
    check_unchanged(before, after, response)
    check_json_readable(fuzzer, url, after, response)


def check_json_readable(
    fuzzer: Fuzzer, url: str, after: tuple[object, ...], response: httpx.Response | None
) -> None:
    """After a write a JSON stream accepted, its catch-up is standard JSON (what
    ``JSON.parse`` reads: no ``Infinity``, no ``NaN``, no lone surrogates)."""
    if response is None or not response.is_success or after[0] != 200:
        return
    if not str(after[1]).lower().startswith("application/json"):
        return
    read = fuzzer.send("GET", url + "?offset=-1", headers=fuzzer.headers)
    if read is None or read.status_code != 200:
        return
    try:
        strict_json(read.content)
    except ValueError as exc:
        violation(
            f"a JSON stream reads as invalid JSON ({exc}: {read.content[:200]!r}) after "
            f"{describe(response.request)}",
            response.request,
        )


# -- DELETE and the other methods ----------------------------------------------------------


@fuzz_settings(max_examples=120)
@given(
    method=st.sampled_from(["DELETE", "DELETE", "DELETE", "OPTIONS", "PATCH", "TRACE", "FOO"]),
    own=st.booleans(),
    path=paths(),
    auth=authorization(),
    headers=merged(
        optional("access-control-request-headers", header_text()),
        optional("origin", header_text()),
        optional("content-type", as_bytes(CONTENT_TYPES)),
    ),
    body=st.one_of(st.just(b""), bodies()),
)
def test_deletes_and_other_methods(
    fuzzer: Fuzzer,
    method: str,
    own: bool,
    path: str,
    auth: dict[str, bytes],
    headers: dict[str, bytes],
    body: bytes,
) -> None:
    fuzzer.example()
    if own:
        path = f"fuzz/delete/{uuid.uuid4()}"
        created = fuzzer.send(
            "PUT",
            f"{MOUNT}/{path}",
            headers={**fuzzer.headers, "content-type": "text/plain"},
            content=b"x",
        )
        assert created is None or created.status_code == 201, created.text
    url = f"{MOUNT}/{path}"
    before = protocol_snapshot(fuzzer, url)
    response = fuzzer.send(method, url, headers={**headers, **auth}, content=body)
    check_unchanged(before, protocol_snapshot(fuzzer, url), response)


# -- the families found on the way --------------------------------------------------------

P = "0" * 16
LONG = long_text(10, 3100)
"""3,100 random characters (they compress badly): too long for a b-tree index key."""
FAMILIES: list[tuple[str, str, dict[str, str], bytes]] = [
    # Numbers out of range: TTL, expiry, sub-offset, producer epoch, cursor.
    ("PUT", "fam/ttl-year", {"content-type": "text/plain", "stream-ttl": "1000000000000"}, b""),
    ("PUT", "fam/ttl-pg", {"content-type": "text/plain", "stream-ttl": "100000000000000"}, b""),
    (
        "PUT",
        "fam/ttl-i64",
        {"content-type": "text/plain", "stream-ttl": "9223372036854775808"},
        b"",
    ),
    ("PUT", "fam/ttl-digits", {"content-type": "text/plain", "stream-ttl": "9" * 5000}, b""),
    (
        "PUT",
        "fam/expires-late",
        {"content-type": "text/plain", "stream-expires-at": "9999-12-31T23:59:59-23:59"},
        b"",
    ),
    (
        "PUT",
        "fam/expires-early",
        {"content-type": "text/plain", "stream-expires-at": "0001-01-01T00:00:00+14:00"},
        b"",
    ),
    (
        "PUT",
        "fam/sub-offset",
        {"stream-forked-from": "fam/text", "stream-fork-sub-offset": "9" * 5000},
        b"",
    ),
    (
        "POST",
        "fam/text",
        {
            "content-type": "text/plain",
            "producer-id": "p",
            "producer-epoch": "9" * 5000,
            "producer-seq": "0",
        },
        b"x",
    ),
    ("GET", f"fam/text?offset=-1&live=long-poll&cursor={'9' * 5000}", {}, b""),
    ("GET", f"fam/text?offset=now&live=sse&cursor={'9' * 5000}", {}, b""),
    # Strings Postgres cannot store: NUL in a path.
    ("HEAD", "a%00b", {}, b""),
    ("GET", "a%00b?offset=-1", {}, b""),
    ("PUT", "a%00b", {"content-type": "text/plain"}, b""),
    ("POST", "a%00b", {"content-type": "text/plain"}, b"x"),
    ("DELETE", "a%00b", {}, b""),
    ("PUT", "fam/fork-nul", {"stream-forked-from": "a%00b"}, b""),
    # Keys longer than an index holds: a path, a producer id.
    ("PUT", LONG, {"content-type": "text/plain"}, b""),
    (
        "POST",
        "fam/text",
        {
            "content-type": "text/plain",
            "producer-id": LONG,
            "producer-epoch": "0",
            "producer-seq": "0",
        },
        b"x",
    ),
    # Pathological JSON: deep nesting, lone surrogates, numbers JSON.parse cannot read.
    ("POST", "fam/json", {"content-type": "application/json"}, b"[" * 5000 + b"]" * 5000),
    ("PUT", "fam/deep", {"content-type": "application/json"}, b"[" * 5000 + b"]" * 5000),
    ("POST", "fam/json", {"content-type": "application/json"}, b'["\\ud800"]'),
    ("POST", "fam/json", {"content-type": "application/json"}, b"[1e999]"),
    ("PUT", "fam/inf", {"content-type": "application/json"}, b"[-1e999]"),
]


def test_known_families(fuzzer: Fuzzer) -> None:
    """Each family of failures the fuzzer found, as a fixed request: whatever the
    generator happens to draw, each stays covered (same properties)."""
    for path, content_type in (("fam/text", "text/plain"), ("fam/json", "application/json")):
        created = fuzzer.send(
            "PUT", f"{MOUNT}/{path}", headers={**fuzzer.headers, "content-type": content_type}
        )
        assert created is not None
        assert created.status_code in (200, 201), created.text
    for method, path, headers, body in FAMILIES:
        url = f"{MOUNT}/{path}"
        before = protocol_snapshot(fuzzer, url.split("?")[0])
        response = fuzzer.send(
            method,
            url,
            headers={**headers, **fuzzer.headers},
            content=body,
            stream_first_bytes="live=sse" in url,
        )
        after = protocol_snapshot(fuzzer, url.split("?")[0])
        if method in ("PUT", "POST", "DELETE"):
            check_unchanged(before, after, response)
        check_json_readable(fuzzer, url, after, response)


def test_requests_sent(fuzzer: Fuzzer, capsys: pytest.CaptureFixture[str]) -> None:
    """The number of requests sent to this server (runs after the others that use it)."""
    with capsys.disabled():
        print("\n" + report(fuzzer.module, minimum=500))

"""The protocol's per-request fast paths answer exactly as the general code they skip.

Each fast path (issue 14: the per-request Python, trimmed) is checked against
the implementation it replaced, kept here as the reference: the query string
against ``parse_qs``, the path and header checks against a decode of every
part, ``Content-Length`` against the general integer check, the ``--no-auth``
guard's remembered verdicts against a fresh judgement each time.
No database, no server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from urllib.parse import parse_qs, unquote_to_bytes

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pts.errors import BadRequest
from pts.http.access import Forbidden
from pts.http.durable import wire
from pts.http.durable.context import query_params
from pts.http.noauth import LoopbackGuard, host_and_origin_headers

# -- the implementations replaced, as references --------------------------------------------


def old_query_params(raw: bytes) -> dict[str, list[str]]:
    return parse_qs(raw.decode("latin-1"), keep_blank_values=True)


def old_check_raw_path(raw_path: bytes) -> None:
    try:
        unquote_to_bytes(raw_path.split(b"?", 1)[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the path is not UTF-8 (once its %-escapes are decoded)") from None


_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def old_check_header_values(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if _CONTROL.search(value) is not None:
            raise BadRequest(f"the {name.decode('latin-1')[:60]} header has a control character")


def old_content_length(raw: str) -> int:
    text = raw.strip()
    maximum = 2**63 - 1
    if (
        re.fullmatch(r"[0-9]+", text) is None
        or len(text.lstrip("0")) > len(str(maximum))
        or int(text) > maximum
    ):
        raise BadRequest(f"Content-Length {raw[:40]!r} is not an integer from 0 to {maximum}")
    return int(text)


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    """What a call did: its value, or its refusal's type and message."""
    try:
        return ("value", call())
    except (BadRequest, Forbidden) as exc:
        return (type(exc).__name__, str(exc))


# -- strategies -----------------------------------------------------------------------------

# Query strings made of the characters that matter to parse_qs: separators, escapes, plus.
query_bytes = st.lists(
    st.sampled_from(
        [
            *(b"offset", b"live", b"cursor", b"=", b"&", b"&&", b"+", b"%", b"%2B", b"%20"),
            *(b"%FF", b"%zz", b"-1", b"now", b"sse", b";", b"\xe9", b"a", b" ", b"\x00"),
        ]
    ),
    max_size=12,
).map(b"".join) | st.binary(max_size=40)

path_bytes = st.lists(
    st.sampled_from([b"/v1/stream/", b"a", b"%", b"%FF", b"%e2%82%ac", b"%ED%A0%80", b"?"])
    | st.binary(min_size=1, max_size=3),
    max_size=8,
).map(b"".join)

header_names = st.sampled_from([b"host", b"Host", b"HOST", b"origin", b"ORIGIN", b"hosts", b"x"])
header_values = st.sampled_from(
    [
        *(b"localhost", b"localhost:8000", b"127.0.0.1", b"127.0.0.1:4437", b"[::1]:80", b"[::1"),
        *(b"evil.example", b"127.0.0.1.evil.example", b"http://localhost:5173", b"null", b""),
        *(b"https://127.0.0.1", b"http://evil.example", b"http://localhost/x", b"\xe9", b"a\tb"),
    ]
) | st.binary(max_size=6)
raw_headers = st.lists(st.tuples(header_names, header_values), max_size=5)


# -- the properties -------------------------------------------------------------------------


@given(query_bytes)
@example(b"offset=&offset=1")
@example(b"offset&live")
@example(b"a=b=c&&=x&")
@example(b"offset=a+b")
@example(b"offset=%41")
def test_query_params_is_parse_qs(raw: bytes) -> None:
    assert query_params(raw) == old_query_params(raw)


@given(path_bytes)
@example(b"/v1/stream/a%FF")
@example(b"/v1/stream/\xff")
@example(b"/v1/stream/a?x=%FF")
def test_check_raw_path_is_a_full_decode(raw: bytes) -> None:
    assert outcome(lambda: wire.check_raw_path(raw)) == outcome(lambda: old_check_raw_path(raw))


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=8), st.binary(max_size=8)), max_size=5))
@example([(b"a", b"ok\t"), (b"b", b"x\x00"), (b"c", b"\n")])
def test_check_header_values_names_the_first_offender(headers: list[tuple[bytes, bytes]]) -> None:
    assert outcome(lambda: wire.check_header_values(headers)) == outcome(
        lambda: old_check_header_values(headers)
    )
    # Any iterable of pairs, as ASGI allows, is checked the same.
    assert outcome(lambda: wire.check_header_values(iter(headers))) == outcome(
        lambda: old_check_header_values(headers)
    )


@given(
    st.text(alphabet="0123456789 +-_\u0663\t", max_size=22)
    | st.integers(min_value=0, max_value=2**70).map(str)
)
@example("9" * 18)
@example("9" * 19)
@example(str(2**63 - 1))
@example(str(2**63))
@example("0" * 30 + "1")
@example("\u0663")
@example(" 12 ")
def test_content_length_is_the_general_check(raw: str) -> None:
    assert outcome(lambda: wire.parse_content_length(raw)) == outcome(
        lambda: old_content_length(raw)
    )


@given(raw_headers)
def test_host_and_origin_headers_are_those_of_the_decoded_names(
    headers: list[tuple[bytes, bytes]],
) -> None:
    decoded = [(name.decode("latin-1").lower(), value) for name, value in headers]
    assert [(n.decode(), v) for n, v in host_and_origin_headers(headers)] == [
        (name, value) for name, value in decoded if name in ("host", "origin")
    ]


@pytest.mark.parametrize("allowed", [(), ("http://app.example",), ("*",)])
@given(st.lists(raw_headers, min_size=1, max_size=6))
def test_guard_remembers_only_what_it_would_allow(
    allowed: tuple[str, ...], requests: list[list[tuple[bytes, bytes]]]
) -> None:
    guard = LoopbackGuard(allowed)
    for headers in requests * 2:  # the second time round, from what it remembered
        decoded = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in headers]
        fresh = LoopbackGuard(allowed)
        assert outcome(partial(guard.check_raw, headers)) == outcome(partial(fresh.check, decoded))


def test_guard_judges_anew_once_it_has_seen_many_hosts() -> None:
    guard = LoopbackGuard()
    for port in range(1000):
        guard.check_raw([(b"host", f"localhost:{port}".encode())])
    with pytest.raises(Forbidden):
        guard.check_raw([(b"host", b"evil.example")])
    guard.check_raw([(b"host", b"localhost:1")])


def test_guard_judges_every_host_and_origin_of_a_request_it_has_not_seen() -> None:
    guard = LoopbackGuard()
    guard.check_raw([(b"host", b"localhost"), (b"content-type", b"text/plain")])
    guard.check_raw([(b"origin", b"http://localhost"), (b"host", b"localhost")])
    for refused in (
        [(b"host", b"localhost"), (b"Host", b"evil.example")],
        [(b"host", b"localhost"), (b"origin", b"http://evil.example")],
        [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"origin", b"null")],
        [(b"content-type", b"text/plain")],
    ):
        with pytest.raises(Forbidden):
            guard.check_raw(refused)

"""A read's parts become body messages: the same bytes, big parts uncopied, small ones joined.

No database, no server: :func:`pts.http.durable.responses.coalesce`,
:func:`~pts.http.durable.responses.send_parts` and (a bodyless 304)
:func:`~pts.http.durable.responses.send_response` against a list of ASGI messages.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pts.http.durable.responses import coalesce, send_parts, send_response

AT_LEAST = 16


@given(st.lists(st.binary(max_size=40), max_size=30))
def test_coalesce_keeps_the_bytes_and_copies_no_big_part(parts: list[bytes]) -> None:
    pieces = coalesce(parts, at_least=AT_LEAST)
    assert b"".join(pieces) == b"".join(parts)
    assert all(pieces), "an empty message"
    # A small piece is the last, or the run of small parts before a big one.
    for piece, following in itertools.pairwise(pieces):
        assert len(piece) >= AT_LEAST or len(following) >= AT_LEAST
    # A part of the threshold or more is sent as the very object the store returned.
    big = [part for part in parts if len(part) >= AT_LEAST]
    assert [piece for piece in pieces if any(piece is part for part in big)] == big


def test_thousands_of_small_appends_make_a_few_messages() -> None:
    parts = [b"x" * 100] * 100_000  # an open stream of 100,000 appends: 10 MB
    pieces = coalesce(parts)
    assert len(pieces) == 39  # 256 KiB each (2,622 appends), the rest in the last
    assert b"".join(pieces) == b"".join(parts)


async def sent(parts: list[bytes], status: int = 200) -> list[Any]:
    """The messages of ``parts`` sent as a response (a 304 by send_response, no body)."""
    messages: list[Any] = []

    async def send(message: Any) -> None:
        messages.append(message)

    headers = {"content-type": "text/plain"}
    if status == 304:
        await send_response(send, status, headers, b"".join(parts))
    else:
        await send_parts(send, status, headers, parts)
    return messages


async def test_send_parts_sends_each_piece_with_the_whole_length() -> None:
    big = b"b" * (300 << 10)
    start, *bodies = await sent([b"a", b"b", big, b"c"])
    assert (b"content-length", str(len(big) + 3).encode()) in start["headers"]
    assert [m["body"] for m in bodies] == [b"ab", big, b"c"]
    assert [m["more_body"] for m in bodies] == [True, True, False]
    assert bodies[1]["body"] is big


async def test_send_parts_with_no_parts_and_without_a_body() -> None:
    start, body = await sent([])
    assert (b"content-length", b"0") in start["headers"]
    assert (body["body"], body["more_body"]) == (b"", False)
    start, body = await sent([b"never sent"], status=304)
    assert not any(name == b"content-length" for name, _ in start["headers"])
    assert (body["body"], body["more_body"]) == (b"", False)

"""The tests' SSE parser follows the WHATWG event-stream rules (tests/support/sse.py)."""

from __future__ import annotations

import pytest

from tests.support.sse import Event, EventStreamParser, parse, parse_events


def test_exactly_one_leading_space_is_stripped_after_the_colon() -> None:
    assert parse_events("data:a\n\ndata: b\n\ndata:  c\n\n") == [
        Event("message", "a", None),
        Event("message", "b", None),
        Event("message", " c", None),
    ]


def test_data_lines_are_joined_with_newlines() -> None:
    assert parse_events("data: one\ndata:\ndata: three\n\n") == [
        Event("message", "one\n\nthree", None)
    ]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_every_line_end_ends_a_line(end: str) -> None:
    stream = end.join(["event: text", "data: a", "id: 1", "", "data: b", "", ""])
    assert parse_events(stream) == [Event("text", "a", "1"), Event("message", "b", "1")]


def test_a_crlf_split_between_pieces_is_one_line_end() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [Event("message", "a", None)]
    assert parser.feed(b"\ndata: b\r\n\r\n") == [Event("message", "b", None)]


def test_a_multibyte_character_split_between_pieces_decodes_whole() -> None:
    raw = "data: café ☕\n\n".encode()
    parser = EventStreamParser()
    out = [item for i in range(len(raw)) for item in parser.feed(raw[i : i + 1])]
    assert out == [Event("message", "café ☕", None)]


def test_comments_come_back_as_their_lines_and_dispatch_nothing() -> None:
    assert parse(": keep-alive\n\n:\ndata: x\n\n") == [
        ": keep-alive",
        ":",
        Event("message", "x", None),
    ]


def test_the_event_name_resets_but_the_last_event_id_carries_over() -> None:
    stream = "event: status\nid: 7\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n"
    assert parse_events(stream) == [
        Event("status", "a", "7"),
        Event("message", "b", "7"),
        Event("message", "c", ""),
    ]


def test_an_id_with_a_nul_is_ignored() -> None:
    assert parse_events("id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")[1].id == "1"


def test_retry_is_taken_only_when_all_digits() -> None:
    events = parse_events("retry: 1500\ndata: a\n\nretry: 1.5\ndata: b\n\nretry: x\ndata: c\n\n")
    assert [e.retry for e in events] == [1500, None, None]


def test_a_field_without_a_colon_has_an_empty_value_and_unknown_fields_are_ignored() -> None:
    assert parse_events("data\n\nfoo: bar\ndata: x\n\n") == [
        Event("message", "", None),
        Event("message", "x", None),
    ]


def test_a_block_without_data_dispatches_nothing() -> None:
    assert parse("event: status\nid: 3\n\n") == []
    # ... but its id still counts for the next event.
    assert parse_events("id: 3\n\ndata: x\n\n") == [Event("message", "x", "3")]


def test_an_event_cut_off_at_the_end_is_dropped_and_a_bom_is_skipped() -> None:
    assert parse_events("\ufeffdata: a\n\ndata: b\n") == [Event("message", "a", None)]
    assert parse_events(b"\xef\xbb\xbfdata: a\n\n") == [Event("message", "a", None)]

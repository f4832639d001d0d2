"""The Durable Streams wire format: offsets, headers, JSON framing, SSE events, cursors.

Pure functions, no I/O: the routes (:mod:`pts.durable.routes`) use them, and
tests can check each rule on its own.

**Offsets** are ``0000000000000000_<bytes>``: the byte offset, zero-padded to 16
digits, behind a fixed 16-digit prefix. They sort as strings in byte order,
are URL-safe, and map one-to-one onto pts's own byte offsets, so a pts
subscriber and a protocol client can hand positions to each other. ``-1``
(the start) and ``now`` (the tail) are accepted as sentinels and never sent.

**JSON streams** store each POST as one unit: its messages (one level of array
flattened), each serialized compactly and followed by a comma. Units then
concatenate into any range of messages, and a range reads as one JSON array:
``[`` + bytes without the last comma + ``]``.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from pts.errors import InvalidInput

__all__ = [
    "JSON_MEDIA_TYPE",
    "BadRequest",
    "control_event",
    "cursor_for",
    "data_event",
    "format_offset",
    "frame_json",
    "frame_messages",
    "is_json",
    "json_array",
    "media_type",
    "parse_expires_at",
    "parse_offset",
    "parse_producer",
    "parse_sub_offset",
    "parse_ttl",
    "split_json_unit",
    "uses_base64",
]

JSON_MEDIA_TYPE = "application/json"
OFFSET_PREFIX = "0" * 16
_OFFSET = re.compile(r"\d{16}_\d{16}")
_NON_NEGATIVE = re.compile(r"0|[1-9]\d*")
_DIGITS = re.compile(r"\d+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest producer epoch/seq accepted: what every JSON client can count to."""
CURSOR_EPOCH = datetime(2024, 10, 9, tzinfo=UTC).timestamp()
CURSOR_INTERVAL = 20
"""Seconds per cursor step: the cursor changes every 20 s so CDNs collapse requests."""


class BadRequest(InvalidInput):
    """A malformed protocol request (400)."""


def format_offset(byte_offset: int) -> str:
    """The protocol's offset for a byte offset."""
    return f"{OFFSET_PREFIX}_{byte_offset:016d}"


def parse_offset(raw: str) -> int | str:
    """``-1`` and ``now`` as they are, a protocol offset as its byte offset; else BadRequest."""
    if raw in ("-1", "now"):
        return raw
    # fullmatch: `$` would accept a trailing newline.
    if _OFFSET.fullmatch(raw) is None:
        raise BadRequest(f"offset {raw[:60]!r} is not -1, now or an offset this server gave")
    prefix, _, position = raw.partition("_")
    if prefix != OFFSET_PREFIX:
        raise BadRequest(f"offset {raw!r} is not an offset this server gave")
    return int(position)


def media_type(content_type: str | None) -> str:
    """The comparable part of a content type: lower-cased, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """JSON mode: ``application/json`` whatever its parameters."""
    return media_type(content_type) == JSON_MEDIA_TYPE


def uses_base64(content_type: str | None) -> bool:
    """SSE sends base64 for everything but ``text/*`` and JSON."""
    kind = media_type(content_type)
    return not (kind.startswith("text/") or kind == JSON_MEDIA_TYPE)


def parse_ttl(raw: str | None) -> int | None:
    """``Stream-TTL``: whole seconds, no sign, no leading zeros."""
    if raw is None:
        return None
    if _NON_NEGATIVE.fullmatch(raw.strip()) is None:
        raise BadRequest(f"Stream-TTL {raw[:40]!r} is not a whole number of seconds")
    return int(raw)


def parse_expires_at(raw: str | None) -> datetime | None:
    """``Stream-Expires-At``: an RFC 3339 timestamp with a time zone."""
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise BadRequest(f"Stream-Expires-At {raw[:60]!r} is not an RFC 3339 timestamp") from None
    if value.tzinfo is None:
        raise BadRequest(f"Stream-Expires-At {raw[:60]!r} has no time zone (add Z)")
    return value


def format_expires_at(value: datetime) -> str:
    """An expiry time as RFC 3339 in UTC, with milliseconds and ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_sub_offset(raw: str | None) -> int | None:
    """``Stream-Fork-Sub-Offset``: a non-negative integer without leading zeros."""
    if raw is None:
        return None
    if _NON_NEGATIVE.fullmatch(raw) is None:
        raise BadRequest(f"Stream-Fork-Sub-Offset {raw[:40]!r} is not a non-negative integer")
    return int(raw)


def parse_producer(headers: Mapping[str, str]) -> tuple[str, int, int] | None:
    """``Producer-Id`` / ``-Epoch`` / ``-Seq``: all three or none."""
    producer_id = headers.get("producer-id")
    epoch = headers.get("producer-epoch")
    seq = headers.get("producer-seq")
    if producer_id is None and epoch is None and seq is None:
        return None
    if producer_id is None or epoch is None or seq is None:
        raise BadRequest("Producer-Id, Producer-Epoch and Producer-Seq go together")
    if not producer_id.strip():
        raise BadRequest("Producer-Id must not be empty")
    numbers = []
    for name, value in (("Producer-Epoch", epoch), ("Producer-Seq", seq)):
        if _DIGITS.fullmatch(value.strip()) is None or int(value) > MAX_SAFE_INTEGER:
            raise BadRequest(f"{name} {value[:40]!r} is not an integer from 0 to 2^53-1")
        numbers.append(int(value))
    return producer_id, numbers[0], numbers[1]


# -- JSON mode -------------------------------------------------------------------------


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def frame_json(body: bytes, *, allow_empty: bool) -> bytes:
    """A JSON body as one stored unit (see the module docstring).

    A top-level array stores each element as a message; any other value is one
    message. An empty array is an error for an append and an empty unit for a
    create (``allow_empty``).
    """
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    messages = value if isinstance(value, list) else [value]
    if not messages and not allow_empty:
        raise BadRequest("an empty JSON array appends nothing")
    return frame_messages(messages)


def _compact(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_array(units: bytes) -> bytes:
    """Stored JSON units as one JSON array."""
    return b"[" + units[:-1] + b"]" if units else b"[]"


def split_json_unit(unit: bytes) -> list[object]:
    """The messages of one stored JSON unit."""
    value = json.loads(json_array(unit).decode("utf-8"))
    assert isinstance(value, list)
    return value


def frame_messages(messages: list[object]) -> bytes:
    """Messages as a stored JSON unit."""
    return b"".join(_compact(message) + b"," for message in messages)


# -- live reads ----------------------------------------------------------------------


def cursor_for(client_cursor: str | None, now: float | None = None) -> str:
    """The ``Stream-Cursor`` to send: the current 20 s interval, always ahead of the client's.

    A client that echoes a cursor at or past the current interval gets a later
    one (by a random 1 s to 1 h), so that caches never serve it the same response.
    """
    current = int(((time.time() if now is None else now) - CURSOR_EPOCH) // CURSOR_INTERVAL)
    if client_cursor is not None and _DIGITS.fullmatch(client_cursor):
        echoed = int(client_cursor)
        if echoed >= current:
            jitter = max(1, math.ceil(random.uniform(1, 3600) / CURSOR_INTERVAL))
            return str(echoed + jitter)
    return str(current)


def data_event(payload: str) -> bytes:
    """An SSE ``data`` event. Every line, empty ones too, becomes a ``data:`` line, so
    a payload's own line breaks (CR, LF or CRLF) can never start a new event.

    The protocol writes ``data:`` with no space; but an SSE reader drops one
    space after the colon, so a line that starts with a space gets one more.
    """
    lines = "".join(
        f"data: {line}\n" if line.startswith(" ") else f"data:{line}\n"
        for line in _LINE_BREAK.split(payload)
    )
    return f"event: data\n{lines}\n".encode()


def control_event(
    next_offset: int,
    *,
    cursor: str | None,
    up_to_date: bool,
    closed: bool,
) -> bytes:
    """An SSE ``control`` event (flat JSON on one line)."""
    fields: dict[str, object] = {"streamNextOffset": format_offset(next_offset)}
    if cursor is not None and not closed:
        fields["streamCursor"] = cursor
    if up_to_date:
        fields["upToDate"] = True
    if closed:
        fields["streamClosed"] = True
    return f"event: control\ndata:{json.dumps(fields, separators=(',', ':'))}\n\n".encode()


def base64_payload(data: bytes) -> str:
    """Binary data for one SSE event: standard base64, padded, decodable on its own."""
    return base64.b64encode(data).decode("ascii")

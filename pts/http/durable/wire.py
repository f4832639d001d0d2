"""The Durable Streams wire format: offsets, headers, JSON framing, SSE events, cursors.

Pure functions, no I/O: the handlers (:mod:`pts.http.durable.create` and the others) use them, and
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

**Bounds.** Every number, time and name a request carries is checked here,
before anything is written, against what Postgres (``bigint``, ``timestamptz``,
a btree index entry, ``text`` without NUL) and Python (``datetime`` up to year
9999, ``int()`` up to 4300 digits) can hold, so that a stream once created is
always readable and removable:

- ``Stream-TTL``: at most :data:`MAX_TTL_SECONDS` (100 years);
- ``Stream-Expires-At``: from :data:`MIN_EXPIRES_AT` (1970) to before
  :data:`MAX_EXPIRES_AT` (the year 9999), in any time zone;
- ``Producer-Epoch`` / ``Producer-Seq``: 0 to 2^53-1; ``Stream-Fork-Sub-Offset``:
  0 to 2^63-1; offsets: the 16+16 ASCII digits this server gives;
- paths, producer ids, ``Stream-Seq`` and content types: at most
  :data:`MAX_NAME_BYTES` bytes of UTF-8, no NUL, no lone surrogates;
- JSON bodies: standard JSON (no ``NaN``/``Infinity``, no number that overflows
  to one, no lone surrogate) nested at most :data:`MAX_JSON_DEPTH` deep.
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
from typing import cast

from pts.errors import BadRequest  # defined with the other errors; importable from here as before
from pts.http.durable.checks import check_header_values, check_raw_path  # as before, too

__all__ = [
    "JSON_MEDIA_TYPE",
    "MAX_EXPIRES_AT",
    "MAX_JSON_DEPTH",
    "MAX_NAME_BYTES",
    "MAX_TTL_SECONDS",
    "MIN_EXPIRES_AT",
    "BadRequest",
    "check_header_values",
    "check_name",
    "check_raw_path",
    "control_event",
    "cursor_for",
    "data_event",
    "format_offset",
    "frame_json",
    "frame_messages",
    "is_json",
    "json_array",
    "media_type",
    "parse_content_length",
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
# ASCII digits only: `\d` (and int()) also take other scripts' digits, such as "٣".
_OFFSET = re.compile(r"[0-9]{16}_[0-9]{16}")
_NON_NEGATIVE = re.compile(r"0|[1-9][0-9]*")
_DIGITS = re.compile(r"[0-9]+")
_CURSOR = re.compile(r"[0-9]{1,18}")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest producer epoch/seq accepted: what every JSON client can count to."""
MAX_BIGINT = 2**63 - 1
"""Postgres ``bigint``: the largest fork sub-offset accepted."""
MAX_TTL_SECONDS = 100 * 365 * 86400
"""The longest ``Stream-TTL``: 100 years (3,153,600,000 s). Each read renews it, so
``now + TTL`` must stay far inside what Postgres and Python's ``datetime`` hold."""
MIN_EXPIRES_AT = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest ``Stream-Expires-At``: any earlier time is as expired, and years near 1
do not survive a conversion to another time zone."""
MAX_EXPIRES_AT = datetime(9999, 1, 1, tzinfo=UTC)
"""``Stream-Expires-At`` is before this: Python's ``datetime`` ends with 9999, and a
value read back in a time zone east of UTC must still fit."""
MAX_NAME_BYTES = 1024
"""The longest path, producer id, ``Stream-Seq`` or content type, in UTF-8 bytes: paths
and producer ids are keys of btree indexes, whose entries hold at most about 2700 bytes."""
MAX_JSON_DEPTH = 512
"""How deep a JSON body may nest arrays and objects (Python parses JSON recursively)."""
CURSOR_EPOCH = datetime(2024, 10, 9, tzinfo=UTC).timestamp()
CURSOR_INTERVAL = 20
"""Seconds per cursor step: the cursor changes every 20 s so CDNs collapse requests."""


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


def _bounded_int(name: str, raw: str, pattern: re.Pattern[str], maximum: int) -> int:
    """``raw`` as an integer from 0 to ``maximum``; BadRequest (never ValueError) otherwise."""
    text = raw.strip()
    # Length first: int() refuses more than 4300 digits with a ValueError.
    significant = text.lstrip("0")
    if (
        pattern.fullmatch(text) is None
        or len(significant) > len(str(maximum))
        or int(text) > maximum
    ):
        raise BadRequest(f"{name} {raw[:40]!r} is not an integer from 0 to {maximum}")
    return int(text)


def check_name(name: str, value: str) -> str:
    """A path, id or type Postgres can store and index: UTF-8 (no lone surrogate), no NUL,
    at most :data:`MAX_NAME_BYTES` bytes."""
    if "\x00" in value:
        raise BadRequest(f"{name} must not contain a NUL character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(f"{name} is not valid Unicode (a lone surrogate)") from None
    if size > MAX_NAME_BYTES:
        raise BadRequest(f"{name} is {size} bytes long; at most {MAX_NAME_BYTES} are accepted")
    return value


def parse_content_length(raw: str | None) -> int | None:
    """``Content-Length``: a byte count in ASCII digits (else BadRequest), or None."""
    if raw is None:
        return None
    if len(raw) <= 18 and raw.isascii() and raw.isdigit():
        return int(raw)  # the usual header: below 10^18, so within MAX_BIGINT
    return _bounded_int("Content-Length", raw, _DIGITS, MAX_BIGINT)


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
    return _bounded_int("Stream-TTL", raw, _NON_NEGATIVE, MAX_TTL_SECONDS)


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
    # Compared as instants (no conversion that could overflow): 9999-12-31T23:59-05:00
    # is in the year 10000 in UTC, and too late.
    if not MIN_EXPIRES_AT <= value < MAX_EXPIRES_AT:
        raise BadRequest(
            f"Stream-Expires-At {raw[:60]!r} is not from {MIN_EXPIRES_AT.year} "
            f"to before {MAX_EXPIRES_AT.year}"
        )
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
    return _bounded_int("Stream-Fork-Sub-Offset", raw, _NON_NEGATIVE, MAX_BIGINT)


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
    check_name("Producer-Id", producer_id)
    return (
        producer_id,
        _bounded_int("Producer-Epoch", epoch, _DIGITS, MAX_SAFE_INTEGER),
        _bounded_int("Producer-Seq", seq, _DIGITS, MAX_SAFE_INTEGER),
    )


# -- JSON mode -------------------------------------------------------------------------


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def frame_json(body: bytes, *, allow_empty: bool) -> bytes:
    """A JSON body as one stored unit (see the module docstring).

    A top-level array stores each element as a message; any other value is one
    message. An empty array is an error for an append and an empty unit for a
    create (``allow_empty``). Only standard JSON gets in: a body every JSON
    parser (``JSON.parse`` too) reads back as it was sent.
    """
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest(_too_deep()) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    # Many brackets are needed to nest deep: most bodies are not walked at all.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise BadRequest(_too_deep())
    messages = value if isinstance(value, list) else [value]
    if not messages and not allow_empty:
        raise BadRequest("an empty JSON array appends nothing")
    try:
        return frame_messages(messages)
    except UnicodeEncodeError:
        raise BadRequest("the body has a lone surrogate (such as \\ud800): not Unicode") from None
    except ValueError:  # allow_nan=False: 1e999 parses as inf, which JSON cannot say
        raise BadRequest("the body has a number too large for a JSON number (1e999?)") from None


def _too_deep() -> str:
    return f"the JSON body nests deeper than {MAX_JSON_DEPTH} arrays and objects"


def _deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays and objects deep.

    Walked level by level, without recursion; each level is a list of references.
    """
    level: list[object] = [value] if isinstance(value, list | dict) else []
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else cast("list[object]", item))
            if isinstance(child, list | dict)
        ]
        if not level:
            return False
    return True


def _compact(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )


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
    # A cursor longer than 18 digits is not one this server gave: like any other
    # cursor it did not give, it is answered with the current interval.
    if client_cursor is not None and _CURSOR.fullmatch(client_cursor):
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

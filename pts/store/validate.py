"""What Postgres (and Python, reading it back) can hold, checked before any SQL.

The store is the last line of defence: every value a caller hands it is
checked here and refused with :class:`~pts.errors.InvalidInput` (400 on the
routes) instead of reaching the database as a driver error (a 500), or being
stored and breaking every later read (a datetime Python cannot represent).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime

from pts.errors import InvalidInput, StreamNotFound
from pts.models import StreamStatus

MAX_KEY_BYTES = 1024
"""Longest client id, path or producer id, in UTF-8 bytes (a btree entry holds about 2700)."""

MAX_METADATA_DEPTH = 32
"""Deepest nesting of lists and objects in a stream's metadata (the top object is depth 1)."""

INT8_MAX = 2**63 - 1
"""Offsets, sizes, TTLs, producer epochs and sequence numbers are Postgres bigints."""

INT4_MAX = 2**31 - 1

EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
"""Times pts stores: a day inside Python's years 1..9999, so every time zone can show them."""

MAX_SECONDS = 100 * 366 * 86400.0
"""Longest duration a sweeper query takes (stale_after, pending_timeout): about 100 years."""


def text(name: str, value: object, *, max_bytes: int | None = None) -> str:
    """A string Postgres can store: no NUL, valid UTF-8 (no lone surrogate), short enough."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain a NUL character")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{name} is not valid Unicode: a lone surrogate at position {exc.start}"
        ) from None
    if max_bytes is not None and len(encoded) > max_bytes:
        raise InvalidInput(f"{name} is {len(encoded)} bytes long; at most {max_bytes} are allowed")
    return value


def optional_text(name: str, value: object, *, max_bytes: int | None = None) -> str | None:
    """:func:`text`, or None."""
    return None if value is None else text(name, value, max_bytes=max_bytes)


def key(name: str, value: object) -> str:
    """A client id, path or producer id: text of at most :data:`MAX_KEY_BYTES` bytes."""
    return text(name, value, max_bytes=MAX_KEY_BYTES)


def integer(name: str, value: object, *, minimum: int = 0, maximum: int = INT8_MAX) -> int:
    """An int in ``[minimum, maximum]`` (by default a non-negative bigint)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        big = abs(value).bit_length() >= 200  # printing a huge int may pass the digit limit
        shown = f"a {value.bit_length()}-bit number" if big else str(value)
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}, not {shown}")
    return value


def optional_integer(name: str, value: object, *, minimum: int = 0) -> int | None:
    """:func:`integer`, or None."""
    return None if value is None else integer(name, value, minimum=minimum)


def seconds(name: str, value: object) -> float:
    """A finite, non-negative duration of at most :data:`MAX_SECONDS`."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be a number of seconds, not {type(value).__name__}")
    number = float(value)
    if not (math.isfinite(number) and 0 <= number <= MAX_SECONDS):
        raise InvalidInput(f"{name} must be between 0 and {MAX_SECONDS:g} seconds, not {value!r}")
    return number


def moment(name: str, value: object) -> datetime:
    """A time zone-aware datetime between :data:`EARLIEST` and :data:`LATEST`.

    Naive datetimes are refused: asyncpg would read them as UTC and psycopg in
    the session's time zone, so the two drivers would store different times.
    """
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must carry a time zone")
    # Compare in UTC without converting: converting year 1 or 9999 may overflow.
    offset = value.utcoffset()
    assert offset is not None
    naive = value.replace(tzinfo=None)
    if not (
        EARLIEST.replace(tzinfo=None) + offset <= naive <= LATEST.replace(tzinfo=None) + offset
    ):
        raise InvalidInput(
            f"{name} must fall between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
        )
    return value


def optional_moment(name: str, value: object) -> datetime | None:
    """:func:`moment`, or None."""
    return None if value is None else moment(name, value)


def ttl(value: object) -> int | None:
    """A TTL in seconds whose expiry (now + TTL) stays before :data:`LATEST`."""
    if value is None:
        return None
    room = int((LATEST - datetime.now(UTC)).total_seconds()) - 86400
    return integer("ttl_seconds", value, maximum=max(0, room))


def metadata(value: object) -> str:
    """A stream's metadata as JSON text: an object of standard JSON, nested at most
    :data:`MAX_METADATA_DEPTH` deep, whose every key and string Postgres can store."""
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise InvalidInput(f"metadata must be a JSON object, not {type(value).__name__}")
    # Walk without recursion: a hostile depth must not exhaust the stack.
    todo: list[tuple[object, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list) and depth > MAX_METADATA_DEPTH:
            raise InvalidInput(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise InvalidInput(f"metadata keys must be strings, not {type(k).__name__}")
                text("a metadata key", k)
                todo.append((v, depth + 1))
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            text("a metadata value", item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(f"metadata holds {item!r}, which JSON cannot represent")
        elif item is not None and not isinstance(item, bool | int):
            raise InvalidInput(f"metadata holds a {type(item).__name__}, which is not JSON")
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as exc:  # an int past Python's digit limit
        raise InvalidInput(f"metadata is not serialisable as JSON: {exc}") from None


def max_stream_size(value: object) -> int | None:
    """A stream size cap: None (no cap) or a positive bigint."""
    if value is None:
        return None
    return integer("max_stream_size", value, minimum=1)


def clean_message(value: str) -> str:
    """A message pts composed itself (e.g. from an exception), made storable: NULs and
    lone surrogates become U+FFFD."""
    return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in value)


def new_stream(
    *,
    initial: StreamStatus,
    client_id: str | None,
    path: str | None,
    content_type: str,
    meta: object,
    owner: str | None,
    expires_at: datetime | None,
    ttl: float | None = None,
) -> str:
    """Check what creates a stream (every store does it alike); returns the metadata's JSON."""
    if initial not in (StreamStatus.PENDING, StreamStatus.STREAMING):
        raise InvalidInput(f"a new stream starts pending or streaming, not {initial}")
    if client_id is not None:
        key("client_id", client_id)
    if path is not None:
        key("path", path)
    if not text("content_type", content_type):
        raise InvalidInput("content_type must not be empty")
    metadata_json = metadata(meta)
    optional_text("owner", owner)
    optional_moment("expires_at", expires_at)
    stream_ttl(ttl, expires_at)
    return metadata_json


def stream_ttl(value: object, expires_at: object) -> float | None:
    """A new stream's fixed TTL (``create_stream(ttl=...)``): seconds, more than 0, whose
    expiry (now + TTL) stays before :data:`LATEST`; never given with ``expires_at``."""
    if value is None:
        return None
    if expires_at is not None:
        raise InvalidInput("give ttl or expires_at, not both")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidInput(f"ttl must be a number of seconds, not {type(value).__name__}")
    room = (LATEST - datetime.now(UTC)).total_seconds() - 86400
    allowed = f"ttl must be more than 0 and at most {room:.0f} seconds"
    if isinstance(value, int) and value.bit_length() >= 200:  # float() of it may overflow
        raise InvalidInput(f"{allowed}, not a {value.bit_length()}-bit number")
    number = float(value)
    if not (math.isfinite(number) and 0 < number <= room):
        raise InvalidInput(f"{allowed}, not {value!r}")
    return number


def prune_args(finished_before: object, limit: object) -> None:
    """The arguments of :meth:`~pts.store.base.Store.prune`."""
    moment("finished_before", finished_before)
    integer("limit", limit, minimum=1, maximum=INT4_MAX)


def sweep_args(seconds_: float, limit: int) -> None:
    """The arguments of the stale and pending sweeps."""
    seconds("stale_after", seconds_)
    integer("limit", limit, minimum=1, maximum=INT4_MAX)


def status(value: str) -> StreamStatus:
    """A stream status; anything else is an InvalidInput."""
    try:
        return StreamStatus(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a stream status") from None


def stream_id(value: uuid.UUID | str) -> uuid.UUID:
    """A UUID or its string form; anything else is a StreamNotFound, not a driver error."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise StreamNotFound(str(value)) from None


__all__ = [
    "EARLIEST",
    "INT8_MAX",
    "LATEST",
    "MAX_KEY_BYTES",
    "MAX_METADATA_DEPTH",
    "clean_message",
    "integer",
    "key",
    "metadata",
    "moment",
    "new_stream",
    "prune_args",
    "seconds",
    "status",
    "stream_id",
    "stream_ttl",
    "sweep_args",
    "text",
]

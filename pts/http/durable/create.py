"""``PUT {path}``: create a stream (201), or 200 for the same config again, 409 for another.

A fork names its source with ``Stream-Forked-From`` and where it starts with
``Stream-Fork-Offset`` / ``Stream-Fork-Sub-Offset``. In steps: the headers are
parsed and checked (:func:`parse_create`), access is asked, the body read, the
fork point found (:func:`fork_plan`), the stream created in one statement, and
an existing stream compared with the request (:func:`config_mismatch`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from litestar.datastructures import Headers
from litestar.types import Send

from pts.errors import (
    BadRequest,
    ContentTypeMismatch,
    DeletedStreamConflict,
    StreamDeleted,
    StreamExists,
    StreamNotFound,
)
from pts.http.durable import wire
from pts.http.durable.context import Context, Target, is_true
from pts.http.durable.responses import (
    AnyRequest,
    location,
    metadata_headers,
    read_body,
    send_response,
)
from pts.models import CreateOutcome, StreamInfo

__all__ = ["CreateRequest", "config_mismatch", "fork_plan", "parse_create", "put"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """What a PUT asks for, from its headers (checked before anything is read or written)."""

    content_type: str | None
    ttl: int | None
    expires_at: datetime | None
    closed: bool
    source_path: str | None
    fork_offset: int | None
    """``Stream-Fork-Offset`` as given (None: not given; a fork then starts at the source's end)."""
    sub_offset: int | None


@dataclass(frozen=True, slots=True)
class Fork:
    """Where a fork starts in its source, and the lifetime it takes from it."""

    source: StreamInfo
    offset: int
    prefix: bytes
    """The first ``sub_offset`` bytes (or messages) of the source's unit at ``offset``."""
    ttl: int | None
    expires_at: datetime | None


def parse_create(headers: Headers) -> CreateRequest:
    """The create request of a PUT's headers; BadRequest for any malformed or contradictory one."""
    ttl = wire.parse_ttl(headers.get("stream-ttl"))
    expires_at = wire.parse_expires_at(headers.get("stream-expires-at"))
    if ttl is not None and expires_at is not None:
        raise BadRequest("send Stream-TTL or Stream-Expires-At, not both")
    source_path = headers.get("stream-forked-from")
    raw_fork_offset = headers.get("stream-fork-offset")
    sub_offset = wire.parse_sub_offset(headers.get("stream-fork-sub-offset"))
    if source_path is None and (raw_fork_offset is not None or sub_offset is not None):
        raise BadRequest("Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From")
    fork_offset: int | None = None
    if raw_fork_offset is not None:
        parsed = wire.parse_offset(raw_fork_offset.strip())
        if not isinstance(parsed, int):
            raise BadRequest("Stream-Fork-Offset must be an offset, not -1 or now")
        fork_offset = parsed
    content_type = headers.get("content-type")
    if content_type is not None:
        wire.check_name("Content-Type", content_type)
    return CreateRequest(
        content_type=content_type,
        ttl=ttl,
        expires_at=expires_at,
        closed=is_true(headers.get("stream-closed")),
        source_path=source_path,
        fork_offset=fork_offset,
        sub_offset=sub_offset,
    )


async def put(ctx: Context, request: AnyRequest, target: Target, send: Send) -> None:
    """Create the stream ``target`` names (or find it created with the same config)."""
    assert target.path is not None
    wanted = parse_create(request.headers)
    await ctx.access.check(request, "create", None)
    body = await read_body(request, ctx.settings.max_body_size)
    fork = None if wanted.source_path is None else await fork_plan(ctx, wanted, wanted.source_path)
    content_type = wanted.content_type or (
        fork.source.content_type if fork is not None else DEFAULT_CONTENT_TYPE
    )
    if fork is not None:
        wanted = replace(wanted, ttl=fork.ttl, expires_at=fork.expires_at)
    stream, created = await _create(ctx, target.path, wanted, content_type, fork, body)
    headers = metadata_headers(stream, with_lifetime=False)
    if not created:
        mismatch = config_mismatch(stream, wanted, content_type, fork)
        if mismatch:
            raise StreamExists(f"{target.path!r} exists with another {mismatch}")
        await send_response(send, 200, headers)
        return
    headers["location"] = location(request)
    await send_response(send, 201, headers)


async def _create(
    ctx: Context,
    path: str,
    wanted: CreateRequest,
    content_type: str,
    fork: Fork | None,
    body: bytes,
) -> tuple[StreamInfo, bool]:
    """The stream at ``path`` once created (True), or as it already was (False)."""
    store = ctx.pts.store
    data = body
    if body and wire.is_json(content_type):
        data = wire.frame_json(body, allow_empty=True)
    outcome, _ = await store.ds_create(
        path,
        content_type=content_type,
        ttl_seconds=wanted.ttl,
        expires_at=wanted.expires_at,
        closed=wanted.closed,
        data=data,
        source=None if fork is None else fork.source.id,
        fork_offset=None if fork is None else fork.offset,
        fork_sub_offset=wanted.sub_offset,
        prefix=b"" if fork is None else fork.prefix,
    )
    if outcome is CreateOutcome.GONE:
        raise DeletedStreamConflict(f"{path!r} was deleted but its forks still hold it")
    if outcome is CreateOutcome.SOURCE_NOT_FOUND:
        raise StreamNotFound(wanted.source_path or "")
    if outcome is CreateOutcome.SOURCE_GONE:
        raise DeletedStreamConflict(f"the source {wanted.source_path!r} was deleted")
    if outcome is CreateOutcome.BAD_FORK_OFFSET:
        raise BadRequest("Stream-Fork-Offset is past the end of the source")
    if outcome is CreateOutcome.CREATED and data:
        ctx.pts.counters.protocol_appended(len(data))
    found = await store.ds_lookup(path)
    if found is None:  # deleted between the two statements
        raise StreamNotFound(path)
    return found.stream, outcome is not CreateOutcome.EXISTS


# -- forks --------------------------------------------------------------------------


async def fork_plan(ctx: Context, wanted: CreateRequest, source_path: str) -> Fork:
    """Where a fork of ``source_path`` starts, and the lifetime it has.

    A fork has its source's content type (409 otherwise) and, without a
    lifetime of its own, its source's.
    """
    source = await _fork_source(ctx, source_path)
    if wanted.content_type is not None and wire.media_type(wanted.content_type) != wire.media_type(
        source.content_type
    ):
        raise ContentTypeMismatch(f"a fork has its source's content type, {source.content_type}")
    ttl, expires_at = wanted.ttl, wanted.expires_at
    if ttl is None and expires_at is None:
        # A fork without its own lifetime takes its source's.
        ttl = source.ttl_seconds
        expires_at = source.expires_at if ttl is None else None
    offset, prefix = await _fork_point(ctx, source, wanted.fork_offset, wanted.sub_offset or 0)
    return Fork(source=source, offset=offset, prefix=prefix, ttl=ttl, expires_at=expires_at)


async def _fork_source(ctx: Context, source_path: str) -> StreamInfo:
    raw = source_path.strip()
    mount = ctx.mount + "/"
    if raw.startswith(mount):
        raw = raw[len(mount) :]
    target = Target.parse(raw)
    try:
        return await ctx.find(target, touch=False)
    except StreamDeleted:
        raise DeletedStreamConflict(f"the source {source_path!r} was deleted") from None


async def _fork_point(
    ctx: Context, source: StreamInfo, fork_offset: int | None, sub_offset: int
) -> tuple[int, bytes]:
    """Where a fork starts, and the prefix of the next unit it takes (the sub-offset)."""
    position = source.size if fork_offset is None else fork_offset
    if position > source.size:
        raise BadRequest("Stream-Fork-Offset is past the end of the source")
    if sub_offset == 0 and position in (0, source.size):
        return position, b""  # the ends are always offsets the stream gave
    read = await ctx.pts.store.read(source.id, position, max_bytes=1)
    if not read.at_boundary:
        raise BadRequest("Stream-Fork-Offset is not an offset this stream gave")
    if sub_offset == 0:
        return position, b""
    unit = read.data
    if not unit:
        raise BadRequest("Stream-Fork-Sub-Offset: there is no message after the fork offset")
    if wire.is_json(source.content_type):
        messages = wire.split_json_unit(unit)
        if sub_offset > len(messages):
            raise BadRequest(
                f"Stream-Fork-Sub-Offset {sub_offset} is past the message's "
                f"{len(messages)} elements"
            )
        return position, wire.frame_messages(messages[:sub_offset])
    if sub_offset > len(unit):
        raise BadRequest(
            f"Stream-Fork-Sub-Offset {sub_offset} is past the message's {len(unit)} bytes"
        )
    return position, unit[:sub_offset]


# -- the same config again ------------------------------------------------------------


def config_mismatch(
    stream: StreamInfo, wanted: CreateRequest, content_type: str, fork: Fork | None
) -> str | None:
    """What differs between an existing stream and a create request (None: the same)."""
    if wire.media_type(content_type) != wire.media_type(stream.content_type):
        return "content type"
    if wanted.ttl != stream.ttl_seconds:
        return "TTL"
    if wanted.ttl is None and wanted.expires_at != stream.expires_at:
        return "expiry time"
    if wanted.closed != stream.closed:
        return "closed state"
    if (None if fork is None else fork.source.id) != stream.forked_from:
        return "fork source"
    if fork is not None:
        if wanted.fork_offset is not None and fork.offset != stream.fork_offset:
            return "fork offset"
        if (wanted.sub_offset or 0) != (stream.fork_sub_offset or 0):
            return "fork sub-offset"
    return None

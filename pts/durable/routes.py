"""The Durable Streams HTTP protocol, served from pts's tables.

Mounted by :class:`~pts.plugin.PTSPlugin` at ``/v1/stream`` (configurable) as
a small ASGI app: the protocol fixes status codes, header names and exact
content types that a framework's conveniences would get in the way of (an
added ``; charset=``, a ``data: `` with a space), so it writes its responses
itself (:mod:`pts.durable.responses`); long-poll and SSE are in
:mod:`pts.durable.live`, the wire format and every input bound in
:mod:`pts.durable.wire`.

- ``PUT {path}``: create (201), or 200 for the same config again, 409 for another;
  a fork with ``Stream-Forked-From`` / ``Stream-Fork-Offset`` / ``Stream-Fork-Sub-Offset``.
- ``POST {path}``: append, close (``Stream-Closed: true``) or both, with
  ``Stream-Seq`` and idempotent producers, in one transaction.
- ``GET {path}?offset=``: catch-up; ``&live=long-poll``; ``&live=sse``.
- ``HEAD {path}``, ``DELETE {path}``, ``OPTIONS`` (CORS preflight).

Every pts stream is readable too: ``{path}/pts/{id}`` serves the stream with
that id (read-only; its driver writes it). Access control is the plugin's
(one :class:`~pts.http.access.Access` for both route sets): reads need
``view``, PUT ``create``, POST ``drive``, DELETE ``delete``, and it is asked
before a body byte is read. Every header, number and name is checked before
anything is written (a 400 otherwise). Every refusal is a typed
:class:`~pts.errors.PTSError` answered from the one table, :mod:`pts.http.errors`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from litestar import Request
from litestar.exceptions import HTTPException
from litestar.types import Receive, Scope, Send

from pts.durable import wire
from pts.durable.live import READ_CHUNK, long_poll, read_headers, sse
from pts.durable.responses import (
    ALLOWED_METHODS,
    EXPOSE_HEADER,
    SECURITY_HEADERS,
    AnyRequest,
    adding_headers,
    etag,
    etag_matches,
    location,
    metadata_headers,
    preflight_headers,
    read_body,
    send_error,
    send_json,
    send_response,
)
from pts.durable.settings import ProtocolSettings
from pts.errors import (
    AppendToClosed,
    BadRequest,
    ContentTypeMismatch,
    DeletedStreamConflict,
    MethodNotAllowed,
    ProducerSeqGap,
    PTSError,
    ReservedPath,
    StaleProducerEpoch,
    StreamDeleted,
    StreamDriven,
    StreamExists,
    StreamNotFound,
    StreamSeqConflict,
)
from pts.http.access import Access, Action
from pts.http.errors import error_content
from pts.logsafe import log_request_failure
from pts.models import AppendOutcome, CreateOutcome, Producer, StreamInfo

if TYPE_CHECKING:
    from pts.core import PersistentTextStreaming

__all__ = ["DurableStreams"]

logger = logging.getLogger("pts.durable")

RESERVED_PREFIX = "__ds/"
PTS_PREFIX = "pts/"


@dataclass(slots=True)
class _Target:
    """What a request's path names: a protocol path, or a pts stream by id."""

    path: str | None
    stream_id: uuid.UUID | None

    @property
    def read_only(self) -> bool:
        return self.stream_id is not None


class DurableStreams:
    """The protocol's ASGI app: the component's streams, behind ``access``, at ``mount``.

    :param pts: the component (open while the app serves).
    :param mount: the path the app is mounted at (``/v1/stream``).
    :param access: who may do what (the same object as the plugin's routes use).
    :param settings: the protocol's own settings (long-poll timeout, body size, CORS).
    """

    def __init__(
        self,
        pts: PersistentTextStreaming,
        mount: str,
        *,
        access: Access,
        settings: ProtocolSettings | None = None,
    ) -> None:
        self.pts = pts
        self.mount = mount.rstrip("/")
        self.access = access
        self.settings = settings or ProtocolSettings()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request: AnyRequest = Request(scope, receive)
        send = adding_headers(send, SECURITY_HEADERS + self._cors_headers(request))
        try:
            await self._dispatch(request, scope, send)
        except HTTPException as exc:  # e.g. 413 from the body size limit
            await send_json(send, exc.status_code, "http_error", str(exc.detail))
        except PTSError as exc:
            status, content, headers = error_content(exc, debug=_debug(scope))
            if status >= 500:
                log_request_failure(logger, request.method, scope["path"], exc)
            await send_error(send, status, content, headers)
        except Exception as exc:  # noqa: BLE001 - logged, with its traceback
            log_request_failure(logger, request.method, scope["path"], exc)
            detail = "internal error; the server log has the details"
            await send_json(send, 500, "internal_error", detail)

    def _cors_headers(self, request: AnyRequest) -> list[tuple[bytes, bytes]]:
        """CORS for the settings' ``cors_origins``: ``*``, a list of origins, or none."""
        allowed = self.settings.cors_origins
        if allowed is None:
            return []
        if allowed == "*":
            return [(b"access-control-allow-origin", b"*"), EXPOSE_HEADER]
        origin = request.headers.get("origin")
        headers = [(b"vary", b"Origin")]
        if origin is not None and origin in allowed:
            headers += [(b"access-control-allow-origin", origin.encode("latin-1")), EXPOSE_HEADER]
        return headers

    async def _dispatch(self, request: AnyRequest, scope: Scope, send: Send) -> None:
        method = request.method
        # Before anything else: values Postgres cannot store, or a response cannot echo.
        wire.check_header_values(scope["headers"])
        raw_path = scope.get("raw_path")
        if raw_path is not None:
            wire.check_raw_path(raw_path)
        if method == "OPTIONS":
            await send_response(send, 204, preflight_headers(request))
            return
        target = self._target(scope["path"])
        handler = {
            "GET": self._get,
            "HEAD": self._head,
            "PUT": self._put,
            "POST": self._post,
            "DELETE": self._delete,
        }.get(method)
        if handler is None:
            raise MethodNotAllowed(f"{method} is not a protocol method", {"allow": ALLOWED_METHODS})
        if target.read_only and method not in ("GET", "HEAD"):
            raise MethodNotAllowed(
                "pts streams are written by their driver; this path is read-only",
                {"allow": "GET, HEAD, OPTIONS"},
            )
        await handler(request, target, send)

    def _target(self, raw: str) -> _Target:
        # Litestar hands a mounted app its path with a trailing slash added.
        path = wire.check_name("the stream path", raw.strip("/"))
        if not path:
            raise StreamNotFound("", "name a stream: /v1/stream/{path}")
        if path.startswith(RESERVED_PREFIX) or path == RESERVED_PREFIX.rstrip("/"):
            raise ReservedPath("paths under __ds/ are reserved by the protocol")
        if path.startswith(PTS_PREFIX):
            try:
                return _Target(None, uuid.UUID(path[len(PTS_PREFIX) :]))
            except ValueError:
                raise StreamNotFound(
                    path[:100], f"{path[:100]!r}: pts/ is followed by a stream id"
                ) from None
        return _Target(path, None)

    # -- lookups and access -----------------------------------------------------------

    async def _find(self, target: _Target, *, touch: bool) -> StreamInfo:
        """The stream a request names; StreamNotFound (also expired), or StreamDeleted (410)."""
        store = self.pts.store
        found = await store.ds_lookup(target.path, stream_id=target.stream_id, touch=touch)
        if found is not None and not found.expired and found.gone:
            raise StreamDeleted(f"stream {target.path!r} was deleted (its forks still read it)")
        if found is None or not found.exists:
            raise StreamNotFound(target.path or str(target.stream_id))
        return found.stream

    async def _stream_for(
        self, request: AnyRequest, target: _Target, action: Action, *, touch: bool
    ) -> StreamInfo:
        return await self.access.stream_for(
            request, action, lambda: self._find(target, touch=touch)
        )

    # -- HEAD -------------------------------------------------------------------------

    async def _head(self, request: AnyRequest, target: _Target, send: Send) -> None:
        # HEAD never renews a TTL: it is how a client watches one run out.
        stream = await self._stream_for(request, target, "view", touch=False)
        headers = metadata_headers(stream)
        headers["cache-control"] = "no-store"
        headers["etag"] = etag(stream.id, 0, stream.size, stream.closed)
        await send_response(send, 200, headers, head=True)

    # -- PUT --------------------------------------------------------------------------

    async def _put(self, request: AnyRequest, target: _Target, send: Send) -> None:
        assert target.path is not None
        headers = request.headers
        ttl = wire.parse_ttl(headers.get("stream-ttl"))
        expires_at = wire.parse_expires_at(headers.get("stream-expires-at"))
        if ttl is not None and expires_at is not None:
            raise BadRequest("send Stream-TTL or Stream-Expires-At, not both")
        closed = _is_true(headers.get("stream-closed"))
        source_path = headers.get("stream-forked-from")
        raw_fork_offset = headers.get("stream-fork-offset")
        sub_offset = wire.parse_sub_offset(headers.get("stream-fork-sub-offset"))
        if source_path is None and (raw_fork_offset is not None or sub_offset is not None):
            raise BadRequest(
                "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From"
            )
        fork_offset: int | None = None
        if raw_fork_offset is not None:
            parsed = wire.parse_offset(raw_fork_offset.strip())
            if not isinstance(parsed, int):
                raise BadRequest("Stream-Fork-Offset must be an offset, not -1 or now")
            fork_offset = parsed
        requested_type = headers.get("content-type")
        if requested_type is not None:
            wire.check_name("Content-Type", requested_type)
        await self.access.check(request, "create", None)
        body = await read_body(request, self.settings.max_body_size)

        store = self.pts.store
        source: StreamInfo | None = None
        prefix = b""
        if source_path is not None:
            source = await self._fork_source(source_path)
            if requested_type is not None and wire.media_type(requested_type) != wire.media_type(
                source.content_type
            ):
                raise ContentTypeMismatch(
                    f"a fork has its source's content type, {source.content_type}"
                )
            if ttl is None and expires_at is None:
                # A fork without its own lifetime takes its source's.
                ttl = source.ttl_seconds
                expires_at = source.expires_at if ttl is None else None
            fork_offset, prefix = await self._fork_point(source, fork_offset, sub_offset or 0)
        content_type = requested_type or (
            source.content_type if source is not None else "application/octet-stream"
        )
        data = body
        if body and wire.is_json(content_type):
            data = wire.frame_json(body, allow_empty=True)
        outcome, _ = await store.ds_create(
            target.path,
            content_type=content_type,
            ttl_seconds=ttl,
            expires_at=expires_at,
            closed=closed,
            data=data,
            source=None if source is None else source.id,
            fork_offset=fork_offset,
            fork_sub_offset=sub_offset,
            prefix=prefix,
        )
        if outcome is CreateOutcome.GONE:
            raise DeletedStreamConflict(f"{target.path!r} was deleted but its forks still hold it")
        if outcome is CreateOutcome.SOURCE_NOT_FOUND:
            raise StreamNotFound(source_path or "")
        if outcome is CreateOutcome.SOURCE_GONE:
            raise DeletedStreamConflict(f"the source {source_path!r} was deleted")
        if outcome is CreateOutcome.BAD_FORK_OFFSET:
            raise BadRequest("Stream-Fork-Offset is past the end of the source")
        found = await store.ds_lookup(target.path)
        if found is None:  # deleted between the two statements
            raise StreamNotFound(target.path)
        stream = found.stream
        if outcome is CreateOutcome.EXISTS:
            mismatch = _config_mismatch(
                stream,
                content_type=content_type,
                ttl=ttl,
                expires_at=expires_at,
                closed=closed,
                source=source,
                fork_offset=None if raw_fork_offset is None else fork_offset,
                sub_offset=sub_offset or 0,
            )
            if mismatch:
                raise StreamExists(f"{target.path!r} exists with another {mismatch}")
            await send_response(send, 200, metadata_headers(stream, with_lifetime=False))
            return
        out = metadata_headers(stream, with_lifetime=False)
        out["location"] = location(request)
        await send_response(send, 201, out)

    async def _fork_source(self, source_path: str) -> StreamInfo:
        raw = source_path.strip()
        mount = self.mount + "/"
        if raw.startswith(mount):
            raw = raw[len(mount) :]
        target = self._target(raw)
        try:
            return await self._find(target, touch=False)
        except StreamDeleted:
            raise DeletedStreamConflict(f"the source {source_path!r} was deleted") from None

    async def _fork_point(
        self, source: StreamInfo, fork_offset: int | None, sub_offset: int
    ) -> tuple[int, bytes]:
        """Where a fork starts, and the prefix of the next unit it takes (the sub-offset)."""
        position = source.size if fork_offset is None else fork_offset
        if position > source.size:
            raise BadRequest("Stream-Fork-Offset is past the end of the source")
        if sub_offset == 0 and position in (0, source.size):
            return position, b""  # the ends are always offsets the stream gave
        read = await self.pts.store.read(source.id, position, max_bytes=1)
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

    # -- POST -------------------------------------------------------------------------

    async def _post(self, request: AnyRequest, target: _Target, send: Send) -> None:
        assert target.path is not None
        headers = request.headers
        parsed_producer = wire.parse_producer(headers)
        producer = None if parsed_producer is None else Producer(*parsed_producer)
        close = _is_true(headers.get("stream-closed"))
        stream_seq = headers.get("stream-seq")
        if stream_seq is not None:
            if not stream_seq:
                raise BadRequest("Stream-Seq must not be empty")
            wire.check_name("Stream-Seq", stream_seq)
        request_type = headers.get("content-type")
        # Access before the body: a caller who may not append costs no body's worth of memory.
        # A hook that judges the stream costs one more query than the append itself.
        await self.access.check_before_lookup(
            request, "drive", lambda: self._find(target, touch=False)
        )
        body = await read_body(request, self.settings.max_body_size)
        if not body and not close:
            raise BadRequest("an append needs a body (or Stream-Closed: true to close)")
        if body and not request_type:
            raise BadRequest("an append needs a Content-Type")
        data = body
        if body and wire.is_json(request_type):
            try:
                data = wire.frame_json(body, allow_empty=False)
            except BadRequest:
                # A missing, closed or other-typed stream answers that first.
                await self._check_writable(target, request_type)
                raise
        result = await self.pts.store.ds_append(
            target.path,
            data,
            media_type=wire.media_type(request_type),
            close=close,
            stream_seq=stream_seq,
            producer=producer,
        )
        out: dict[str, str] = {"stream-next-offset": wire.format_offset(result.size)}
        if result.closed:
            out["stream-closed"] = "true"
        outcome = result.outcome
        if outcome is AppendOutcome.APPENDED or outcome is AppendOutcome.DUPLICATE:
            if producer is not None:
                out["producer-epoch"] = str(result.epoch)
                out["producer-seq"] = str(result.seq)
            status = (
                200 if producer is not None and body and outcome is AppendOutcome.APPENDED else 204
            )
            await send_response(send, status, out)
            return
        if outcome is AppendOutcome.NOT_FOUND:
            raise StreamNotFound(target.path)
        if outcome is AppendOutcome.GONE:
            raise StreamDeleted(f"stream {target.path!r} was deleted (its forks still read it)")
        if outcome is AppendOutcome.DRIVEN:
            raise StreamDriven("a pts driver is writing this stream")
        if outcome is AppendOutcome.CLOSED:
            raise AppendToClosed("the stream is closed", out)
        if outcome is AppendOutcome.CONTENT_TYPE:
            raise ContentTypeMismatch("the Content-Type differs from the stream's")
        if outcome is AppendOutcome.STALE_EPOCH:
            raise StaleProducerEpoch(
                f"producer epoch {producer.epoch if producer else ''} is stale",
                {"producer-epoch": str(result.epoch)},
            )
        if outcome is AppendOutcome.BAD_EPOCH_SEQ:
            raise BadRequest("a new producer epoch starts at Producer-Seq 0")
        if outcome is AppendOutcome.SEQ_GAP:
            raise ProducerSeqGap(
                f"expected Producer-Seq {result.expected_seq}, got {result.seq}",
                {
                    "producer-expected-seq": str(result.expected_seq),
                    "producer-received-seq": str(result.seq),
                },
            )
        raise StreamSeqConflict(f"Stream-Seq {stream_seq!r} is not after the last one")

    async def _check_writable(self, target: _Target, request_type: str | None) -> None:
        stream = await self._find(target, touch=False)
        if stream.closed:
            raise AppendToClosed(
                "the stream is closed",
                {"stream-closed": "true", "stream-next-offset": wire.format_offset(stream.size)},
            )
        if wire.media_type(stream.content_type) != wire.media_type(request_type):
            raise ContentTypeMismatch("the Content-Type differs from the stream's")

    # -- DELETE -----------------------------------------------------------------------

    async def _delete(self, request: AnyRequest, target: _Target, send: Send) -> None:
        stream = await self._stream_for(request, target, "delete", touch=False)
        if await self.pts.store.ds_delete(stream.id) == "not_found":
            raise StreamNotFound(target.path or str(stream.id))
        await send_response(send, 204, {})

    # -- GET --------------------------------------------------------------------------

    async def _get(self, request: AnyRequest, target: _Target, send: Send) -> None:
        query = _query(request.scope.get("query_string", b""))
        raw_offset = _single(query, "offset")
        live = _single(query, "live")
        cursor = _single(query, "cursor")
        if live not in (None, "long-poll", "sse"):
            raise BadRequest(f"live={live!r}: use long-poll or sse")
        if live is not None and raw_offset is None:
            raise BadRequest(f"live={live} needs an offset (-1, now, or an offset)")
        offset = wire.parse_offset(raw_offset) if raw_offset is not None else "-1"
        stream = await self._stream_for(request, target, "view", touch=True)
        position = _position(stream, offset)
        store = self.pts.store
        if position > stream.size:
            raise BadRequest("the offset is past the end of the stream")
        json_mode = wire.is_json(stream.content_type)
        if live == "sse":
            if json_mode and 0 < position < stream.size:
                # Checked before the response starts: an error can still be a 400.
                read = await store.read(stream.id, position, max_bytes=1)
                if not read.at_boundary:
                    raise BadRequest("a JSON stream is read from the offsets it gave")
            await sse(self.pts, request, stream, position, cursor, send)
            return
        if offset == "now" and live is None:
            headers = read_headers(stream, stream.size, up_to_date=True, closed=stream.closed)
            headers["cache-control"] = "no-store"
            await send_response(send, 200, headers, b"[]" if json_mode else b"")
            return
        if live == "long-poll" and position == stream.size and not stream.closed:
            # At the tail: the hub's own read sees whatever committed since the lookup.
            timeout = self.settings.long_poll_timeout
            await long_poll(self.pts, request, stream, position, cursor, send, timeout)
            return
        # Behind the tail, or at the tail of a closed stream: answer at once.
        read = await store.read(stream.id, position, max_bytes=READ_CHUNK)
        if json_mode and not read.at_boundary:
            raise BadRequest("a JSON stream is read from the offsets it gave")
        up_to_date = read.next_offset >= read.size
        closed = read.closed and up_to_date
        headers = read_headers(stream, read.next_offset, up_to_date=up_to_date, closed=closed)
        if live == "long-poll":
            if not read.data:  # closed, at the tail
                await send_response(send, 204, headers)
                return
            headers["stream-cursor"] = wire.cursor_for(cursor)
        tag = etag(stream.id, position, read.next_offset, closed)
        headers["etag"] = tag
        # Bytes behind the tail never change; the tail's response does.
        headers["cache-control"] = "no-store" if up_to_date else "private, max-age=60"
        if live is None and etag_matches(request.headers.get("if-none-match"), tag):
            await send_response(send, 304, headers)
            return
        body = wire.json_array(read.data) if json_mode else read.data
        await send_response(send, 200, headers, body)


# -- helpers ---------------------------------------------------------------------------


def _debug(scope: Scope) -> bool:
    """Whether the Litestar app this is mounted in runs in debug mode (a 500 shows its message)."""
    app = scope.get("app")
    return bool(getattr(app, "debug", False))


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def _query(raw: bytes) -> dict[str, list[str]]:
    # keep_blank_values: `?offset=` must be an error, not absent.
    return parse_qs(raw.decode("latin-1"), keep_blank_values=True)


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise BadRequest(f"give {name} once")
    if not values[0]:
        raise BadRequest(f"{name} must not be empty")
    return values[0]


def _position(stream: StreamInfo, offset: int | str) -> int:
    if offset == "-1":
        return 0
    if offset == "now":
        return stream.size
    assert isinstance(offset, int)
    return offset


def _config_mismatch(
    stream: StreamInfo,
    *,
    content_type: str,
    ttl: int | None,
    expires_at: datetime | None,
    closed: bool,
    source: StreamInfo | None,
    fork_offset: int | None,
    sub_offset: int,
) -> str | None:
    """What differs between an existing stream and a create request (None: the same)."""
    if wire.media_type(content_type) != wire.media_type(stream.content_type):
        return "content type"
    if ttl != stream.ttl_seconds:
        return "TTL"
    if ttl is None and expires_at != stream.expires_at:
        return "expiry time"
    if closed != stream.closed:
        return "closed state"
    if (None if source is None else source.id) != stream.forked_from:
        return "fork source"
    if source is not None:
        if fork_offset is not None and fork_offset != stream.fork_offset:
            return "fork offset"
        if sub_offset != (stream.fork_sub_offset or 0):
            return "fork sub-offset"
    return None

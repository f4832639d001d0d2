"""The Durable Streams HTTP protocol, served from pts's tables.

Mounted by :class:`~pts.plugin.PTSPlugin` at ``/v1/stream`` (configurable) as
a small ASGI app: the protocol fixes status codes, header names and exact
content types that a framework's conveniences would get in the way of (an
added ``; charset=``, a ``data: `` with a space), so this module writes its
responses itself.

- ``PUT {path}``: create (201), or 200 for the same config again, 409 for another;
  a fork with ``Stream-Forked-From`` / ``Stream-Fork-Offset`` / ``Stream-Fork-Sub-Offset``.
- ``POST {path}``: append, close (``Stream-Closed: true``) or both, with
  ``Stream-Seq`` and idempotent producers, in one transaction.
- ``GET {path}?offset=``: catch-up; ``&live=long-poll``; ``&live=sse``.
- ``HEAD {path}``, ``DELETE {path}``, ``OPTIONS`` (CORS preflight).

Every pts stream is readable too: ``{path}/pts/{id}`` serves the stream with
that id (read-only; its driver writes it). Access control is the plugin's:
reads need ``view``, PUT ``create``, POST ``drive``, DELETE ``delete``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias, cast
from urllib.parse import parse_qs

from litestar import Request
from litestar.exceptions import HTTPException
from litestar.types import HTTPResponseStartEvent, Message, Receive, Scope, Send

from pts.durable import wire
from pts.durable.wire import BadRequest
from pts.errors import PTSError, StreamDeleted, StreamNotFound
from pts.hub import Chunk
from pts.logsafe import log_request_failure
from pts.models import AppendOutcome, CreateOutcome, Producer, StreamInfo

if TYPE_CHECKING:
    from pts.plugin import Action, PTSPlugin

__all__ = ["DurableStreams"]

logger = logging.getLogger("pts.durable")

AnyRequest: TypeAlias = Request[Any, Any, Any]

READ_CHUNK = 8 << 20
"""About the most bytes a catch-up response (or SSE data event) carries; clients follow
the offset. Fewer, larger responses read faster (a 5 MB catch-up: 230-400 MB/s at
4 MiB, about 620 MB/s at 8 MiB); each one holds about twice this in memory while
it is sent."""
SSE_MAX_DURATION = 60.0
"""An SSE response ends after this long (the client reconnects): lets CDNs collapse requests."""
SSE_KEEPALIVE = 15.0

EXPOSED_HEADERS = (
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
    "Stream-Expires-At, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, "
    "Producer-Received-Seq, ETag, Location, Content-Type, stream-sse-data-encoding"
)
ALLOWED_HEADERS = (
    "content-type, authorization, if-none-match, stream-seq, stream-ttl, stream-expires-at, "
    "stream-closed, producer-id, producer-epoch, producer-seq, stream-forked-from, "
    "stream-fork-offset, stream-fork-sub-offset, last-event-id"
)
ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
RESERVED_PREFIX = "__ds/"
PTS_PREFIX = "pts/"

# Sent with every response, errors included: browsers may read them, never sniff them.
_SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"cross-origin"),
]
_EXPOSE = (b"access-control-expose-headers", EXPOSED_HEADERS.encode())


class _Reply(Exception):
    """Stop handling and send this response (any status, any headers)."""

    def __init__(
        self, status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None
    ):
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = dict(headers or {})


@dataclass(slots=True)
class _Target:
    """What a request's path names: a protocol path, or a pts stream by id."""

    path: str | None
    stream_id: uuid.UUID | None

    @property
    def read_only(self) -> bool:
        return self.stream_id is not None


class DurableStreams:
    """The protocol's ASGI app, bound to a plugin (its component, hook and settings)."""

    def __init__(self, plugin: PTSPlugin, mount: str) -> None:
        self.plugin = plugin
        self.mount = mount.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request: AnyRequest = Request(scope, receive)
        send = _adding_headers(send, _SECURITY + self._cors_headers(request))
        try:
            await self._dispatch(request, scope, send)
        except _Reply as reply:
            await _send_json(send, reply.status, reply.kind, reply.detail, reply.headers)
        except HTTPException as exc:  # e.g. 413 from the body size limit
            await _send_json(send, exc.status_code, "http_error", str(exc.detail))
        except PTSError as exc:
            status, kind = _status(exc)
            if status >= 500:
                log_request_failure(logger, request.method, scope["path"], exc)
            await _send_json(send, status, kind, str(exc) or kind)
        except Exception as exc:  # noqa: BLE001 - logged, with its traceback
            log_request_failure(logger, request.method, scope["path"], exc)
            detail = "internal error; the server log has the details"
            await _send_json(send, 500, "internal_error", detail)

    def _cors_headers(self, request: AnyRequest) -> list[tuple[bytes, bytes]]:
        """CORS for the plugin's ``cors_origins``: ``*``, a list of origins, or none."""
        allowed = self.plugin.cors_origins
        if allowed is None:
            return []
        if allowed == "*":
            return [(b"access-control-allow-origin", b"*"), _EXPOSE]
        origin = request.headers.get("origin")
        headers = [(b"vary", b"Origin")]
        if origin is not None and origin in allowed:
            headers += [(b"access-control-allow-origin", origin.encode("latin-1")), _EXPOSE]
        return headers

    async def _dispatch(self, request: AnyRequest, scope: Scope, send: Send) -> None:
        method = request.method
        if method == "OPTIONS":
            await _send(send, 204, _preflight_headers(request))
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
            raise _Reply(
                405,
                "method_not_allowed",
                f"{method} is not a protocol method",
                {"allow": ALLOWED_METHODS},
            )
        if target.read_only and method not in ("GET", "HEAD"):
            raise _Reply(
                405,
                "method_not_allowed",
                "pts streams are written by their driver; this path is read-only",
                {"allow": "GET, HEAD, OPTIONS"},
            )
        await handler(request, target, send)

    def _target(self, raw: str) -> _Target:
        # Litestar hands a mounted app its path with a trailing slash added.
        path = raw.strip("/")
        if not path:
            raise _Reply(404, "stream_not_found", "name a stream: /v1/stream/{path}")
        if path.startswith(RESERVED_PREFIX) or path == RESERVED_PREFIX.rstrip("/"):
            raise _Reply(404, "reserved", "paths under __ds/ are reserved by the protocol")
        if path.startswith(PTS_PREFIX):
            try:
                return _Target(None, uuid.UUID(path[len(PTS_PREFIX) :]))
            except ValueError:
                raise _Reply(
                    404, "stream_not_found", f"{path[:100]!r}: pts/ is followed by a stream id"
                ) from None
        return _Target(path, None)

    # -- lookups and access -----------------------------------------------------------

    async def _find(self, target: _Target, *, touch: bool) -> StreamInfo:
        """The stream a request names; StreamNotFound (also expired), or StreamDeleted (410)."""
        store = self.plugin.pts.store
        found = await store.ds_lookup(target.path, stream_id=target.stream_id, touch=touch)
        if found is not None and not found.expired and found.gone:
            raise StreamDeleted(f"stream {target.path!r} was deleted (its forks still read it)")
        if found is None or not found.exists:
            raise StreamNotFound(target.path or str(target.stream_id))
        return found.stream

    async def _stream_for(
        self, request: AnyRequest, target: _Target, action: Action, *, touch: bool
    ) -> StreamInfo:
        if self.plugin.authorize is None:
            # Refuse anonymous callers before saying whether the stream exists.
            await self.plugin.check(request, action, None)
            return await self._find(target, touch=touch)
        stream = await self._find(target, touch=touch)
        await self.plugin.check(request, action, stream)
        return stream

    # -- HEAD -------------------------------------------------------------------------

    async def _head(self, request: AnyRequest, target: _Target, send: Send) -> None:
        # HEAD never renews a TTL: it is how a client watches one run out.
        stream = await self._stream_for(request, target, "view", touch=False)
        headers = _metadata_headers(stream)
        headers["cache-control"] = "no-store"
        headers["etag"] = _etag(stream.id, 0, stream.size, stream.closed)
        await _send(send, 200, headers, head=True)

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
        await self.plugin.check(request, "create", None)
        body = await _read_body(request, self.plugin.max_body_size)

        store = self.plugin.pts.store
        source: StreamInfo | None = None
        prefix = b""
        if source_path is not None:
            source = await self._fork_source(source_path)
            if requested_type is not None and wire.media_type(requested_type) != wire.media_type(
                source.content_type
            ):
                raise _Reply(
                    409,
                    "content_type_mismatch",
                    f"a fork has its source's content type, {source.content_type}",
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
            raise _Reply(
                409, "stream_deleted", f"{target.path!r} was deleted but its forks still hold it"
            )
        if outcome is CreateOutcome.SOURCE_NOT_FOUND:
            raise StreamNotFound(source_path or "")
        if outcome is CreateOutcome.SOURCE_GONE:
            raise _Reply(409, "stream_deleted", f"the source {source_path!r} was deleted")
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
                raise _Reply(
                    409, "stream_exists", f"{target.path!r} exists with another {mismatch}"
                )
            await _send(send, 200, _metadata_headers(stream, with_lifetime=False))
            return
        out = _metadata_headers(stream, with_lifetime=False)
        out["location"] = _location(request)
        await _send(send, 201, out)

    async def _fork_source(self, source_path: str) -> StreamInfo:
        raw = source_path.strip()
        mount = self.mount + "/"
        if raw.startswith(mount):
            raw = raw[len(mount) :]
        target = self._target(raw)
        try:
            return await self._find(target, touch=False)
        except StreamDeleted:
            raise _Reply(409, "stream_deleted", f"the source {source_path!r} was deleted") from None

    async def _fork_point(
        self, source: StreamInfo, fork_offset: int | None, sub_offset: int
    ) -> tuple[int, bytes]:
        """Where a fork starts, and the prefix of the next unit it takes (the sub-offset)."""
        position = source.size if fork_offset is None else fork_offset
        if position > source.size:
            raise BadRequest("Stream-Fork-Offset is past the end of the source")
        if sub_offset == 0 and position in (0, source.size):
            return position, b""  # the ends are always offsets the stream gave
        read = await self.plugin.pts.store.read(source.id, position, max_bytes=1)
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
        if stream_seq is not None and not stream_seq:
            raise BadRequest("Stream-Seq must not be empty")
        request_type = headers.get("content-type")
        body = await _read_body(request, self.plugin.max_body_size)
        if not body and not close:
            raise BadRequest("an append needs a body (or Stream-Closed: true to close)")
        if body and not request_type:
            raise BadRequest("an append needs a Content-Type")
        if self.plugin.authorize is None:
            await self.plugin.check(request, "drive", None)
        elif not self.plugin.allows_everything:
            # The hook judges the stream: one more query than the append itself.
            stream = await self._find(target, touch=False)
            await self.plugin.check(request, "drive", stream)
        data = body
        if body and wire.is_json(request_type):
            try:
                data = wire.frame_json(body, allow_empty=False)
            except BadRequest:
                # A missing, closed or other-typed stream answers that first.
                await self._check_writable(target, request_type)
                raise
        result = await self.plugin.pts.store.ds_append(
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
            await _send(send, status, out)
            return
        if outcome is AppendOutcome.NOT_FOUND:
            raise StreamNotFound(target.path)
        if outcome is AppendOutcome.GONE:
            raise StreamDeleted(f"stream {target.path!r} was deleted (its forks still read it)")
        if outcome is AppendOutcome.DRIVEN:
            raise _Reply(409, "already_driven", "a pts driver is writing this stream")
        if outcome is AppendOutcome.CLOSED:
            raise _Reply(409, "stream_closed", "the stream is closed", out)
        if outcome is AppendOutcome.CONTENT_TYPE:
            raise _Reply(409, "content_type_mismatch", "the Content-Type differs from the stream's")
        if outcome is AppendOutcome.STALE_EPOCH:
            raise _Reply(
                403,
                "stale_producer_epoch",
                f"producer epoch {producer.epoch if producer else ''} is stale",
                {"producer-epoch": str(result.epoch)},
            )
        if outcome is AppendOutcome.BAD_EPOCH_SEQ:
            raise BadRequest("a new producer epoch starts at Producer-Seq 0")
        if outcome is AppendOutcome.SEQ_GAP:
            raise _Reply(
                409,
                "producer_seq_gap",
                f"expected Producer-Seq {result.expected_seq}, got {result.seq}",
                {
                    "producer-expected-seq": str(result.expected_seq),
                    "producer-received-seq": str(result.seq),
                },
            )
        raise _Reply(
            409, "stream_seq_conflict", f"Stream-Seq {stream_seq!r} is not after the last one"
        )

    async def _check_writable(self, target: _Target, request_type: str | None) -> None:
        stream = await self._find(target, touch=False)
        if stream.closed:
            raise _Reply(
                409,
                "stream_closed",
                "the stream is closed",
                {"stream-closed": "true", "stream-next-offset": wire.format_offset(stream.size)},
            )
        if wire.media_type(stream.content_type) != wire.media_type(request_type):
            raise _Reply(409, "content_type_mismatch", "the Content-Type differs from the stream's")

    # -- DELETE -----------------------------------------------------------------------

    async def _delete(self, request: AnyRequest, target: _Target, send: Send) -> None:
        stream = await self._stream_for(request, target, "delete", touch=False)
        if await self.plugin.pts.store.ds_delete(stream.id) == "not_found":
            raise StreamNotFound(target.path or str(stream.id))
        await _send(send, 204, {})

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
        store = self.plugin.pts.store
        if position > stream.size:
            raise BadRequest("the offset is past the end of the stream")
        json_mode = wire.is_json(stream.content_type)
        if live == "sse":
            if json_mode and 0 < position < stream.size:
                # Checked before the response starts: an error can still be a 400.
                read = await store.read(stream.id, position, max_bytes=1)
                if not read.at_boundary:
                    raise BadRequest("a JSON stream is read from the offsets it gave")
            await self._sse(request, stream, position, cursor, send)
            return
        if offset == "now" and live is None:
            headers = _read_headers(stream, stream.size, up_to_date=True, closed=stream.closed)
            headers["cache-control"] = "no-store"
            await _send(send, 200, headers, b"[]" if json_mode else b"")
            return
        if live == "long-poll" and position == stream.size and not stream.closed:
            # At the tail: the hub's own read sees whatever committed since the lookup.
            await self._long_poll(request, stream, position, cursor, send)
            return
        # Behind the tail, or at the tail of a closed stream: answer at once.
        read = await store.read(stream.id, position, max_bytes=READ_CHUNK)
        if json_mode and not read.at_boundary:
            raise BadRequest("a JSON stream is read from the offsets it gave")
        up_to_date = read.next_offset >= read.size
        closed = read.closed and up_to_date
        headers = _read_headers(stream, read.next_offset, up_to_date=up_to_date, closed=closed)
        if live == "long-poll":
            if not read.data:  # closed, at the tail
                await _send(send, 204, headers)
                return
            headers["stream-cursor"] = wire.cursor_for(cursor)
        etag = _etag(stream.id, position, read.next_offset, closed)
        headers["etag"] = etag
        # Bytes behind the tail never change; the tail's response does.
        headers["cache-control"] = "no-store" if up_to_date else "private, max-age=60"
        if live is None and _etag_matches(request.headers.get("if-none-match"), etag):
            await _send(send, 304, headers)
            return
        body = wire.json_array(read.data) if json_mode else read.data
        await _send(send, 200, headers, body)

    async def _long_poll(
        self,
        request: AnyRequest,
        stream: StreamInfo,
        position: int,
        cursor: str | None,
        send: Send,
    ) -> None:
        """Wait at the tail for new bytes or the close, up to the long-poll timeout.

        The wait is the hub's (LISTEN/NOTIFY), not a polling loop; a client
        that hangs up stops it at once.
        """
        chunks = self.plugin.pts.subscribe_bytes(stream.id, position)

        async def news() -> Chunk | None:
            async for chunk in chunks:
                if chunk is not None and (chunk.data or _at_close(chunk)):
                    return chunk
            return None

        waiting = asyncio.ensure_future(news())
        hung_up = asyncio.ensure_future(_disconnect(request.receive))
        try:
            await asyncio.wait(
                {waiting, hung_up},
                timeout=self.plugin.long_poll_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if hung_up.done():
                return
            chunk = waiting.result() if waiting.done() else None
        except StreamNotFound:
            raise _Reply(404, "stream_not_found", "the stream was deleted") from None
        finally:
            for task in (waiting, hung_up):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StreamNotFound):
                await waiting
            await chunks.aclose()
        data = b"" if chunk is None else chunk.data
        closed = chunk is not None and _at_close(chunk)
        next_offset = position if chunk is None else chunk.end
        headers = _read_headers(stream, next_offset, up_to_date=True, closed=closed)
        if not closed:
            headers["stream-cursor"] = wire.cursor_for(cursor)
        headers["cache-control"] = "no-store"
        if not data:
            await _send(send, 204, headers)
            return
        body = wire.json_array(data) if wire.is_json(stream.content_type) else data
        await _send(send, 200, headers, body)

    async def _sse(
        self,
        request: AnyRequest,
        stream: StreamInfo,
        position: int,
        cursor: str | None,
        send: Send,
    ) -> None:
        """Server-sent events: each batch of bytes is one ``data`` event and a ``control``."""
        headers = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
        }
        binary = wire.uses_base64(stream.content_type)
        if binary:
            headers["stream-sse-data-encoding"] = "base64"
        await send({"type": "http.response.start", "status": 200, "headers": _raw_headers(headers)})
        events = self._sse_events(stream, position, cursor)
        disconnected = asyncio.ensure_future(_disconnect(request.receive))
        try:
            async with asyncio.timeout(SSE_MAX_DURATION):
                while True:
                    next_event = asyncio.ensure_future(anext(events))
                    done, _ = await asyncio.wait(
                        {next_event, disconnected}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if next_event not in done:
                        next_event.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await next_event
                        return
                    try:
                        payload = next_event.result()
                    except StopAsyncIteration:
                        break
                    await send({"type": "http.response.body", "body": payload, "more_body": True})
        except TimeoutError:
            pass
        except (StreamNotFound, StreamDeleted):
            pass  # deleted meanwhile: end the response; a reconnect gets the 404/410
        finally:
            disconnected.cancel()
            await events.aclose()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _sse_events(
        self, stream: StreamInfo, position: int, cursor: str | None
    ) -> AsyncGenerator[bytes, None]:
        json_mode = wire.is_json(stream.content_type)
        binary = wire.uses_base64(stream.content_type)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        cursor_value = wire.cursor_for(cursor)
        store = self.plugin.pts.store

        def batch(data: bytes, end: int, up_to_date: bool, closed: bool) -> bytes:
            out = b""
            held = 0
            if data:
                if json_mode:
                    payload = wire.json_array(data).decode("utf-8", errors="replace")
                elif binary:
                    payload = wire.base64_payload(data)
                else:
                    payload = decoder.decode(data, final=closed)
                    held = len(decoder.getstate()[0])
                if payload:
                    out += wire.data_event(payload)
            return out + wire.control_event(
                end - held, cursor=cursor_value, up_to_date=up_to_date, closed=closed
            )

        # A backlog is caught up in bounded reads; then the hub follows the stream
        # live. A reader that starts at the tail goes to the hub at once: its
        # first read (empty, or what committed since the lookup) is the first event.
        first = True
        while position < stream.size or stream.closed:
            read = await store.read(stream.id, position, max_bytes=READ_CHUNK)
            up_to_date = read.next_offset >= read.size
            closed = read.closed and up_to_date
            yield batch(read.data, read.next_offset, up_to_date, closed)
            first = False
            position = read.next_offset
            if closed:
                return
            if up_to_date:
                break
        async for chunk in self.plugin.pts.subscribe_bytes(stream.id, position, idle=SSE_KEEPALIVE):
            if chunk is None:
                yield wire.control_event(
                    position, cursor=cursor_value, up_to_date=True, closed=False
                )
                continue
            closed = _at_close(chunk)
            if not chunk.data and not closed and not first:
                continue
            first = False
            position = chunk.end
            yield batch(chunk.data, chunk.end, chunk.end >= chunk.size, closed)
            if closed:
                return


# -- helpers ---------------------------------------------------------------------------


def _status(exc: PTSError) -> tuple[int, str]:
    """The plugin's status table; a malformed protocol request is ``bad_request``."""
    if isinstance(exc, BadRequest):
        return 400, "bad_request"
    from pts.plugin import error_status  # the plugin imports this module

    return error_status(exc)


def _at_close(chunk: Chunk) -> bool:
    """The chunk reaches the end of a closed stream."""
    return chunk.closed and chunk.end >= chunk.size


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


def _etag(stream_id: uuid.UUID, start: int, end: int, closed: bool) -> str:
    return f'"{stream_id}:{start}:{end}{":c" if closed else ""}"'


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    return any(tag.strip() in (etag, "*", "W/" + etag) for tag in header.split(","))


def _metadata_headers(stream: StreamInfo, *, with_lifetime: bool = True) -> dict[str, str]:
    headers = {
        "content-type": stream.content_type,
        "stream-next-offset": wire.format_offset(stream.size),
    }
    if stream.closed:
        headers["stream-closed"] = "true"
    if with_lifetime:
        if stream.ttl_seconds is not None:
            headers["stream-ttl"] = str(stream.ttl_seconds)
        if stream.expires_at is not None:
            headers["stream-expires-at"] = wire.format_expires_at(stream.expires_at)
    return headers


def _read_headers(
    stream: StreamInfo, next_offset: int, *, up_to_date: bool, closed: bool
) -> dict[str, str]:
    headers = {
        "content-type": stream.content_type,
        "stream-next-offset": wire.format_offset(next_offset),
    }
    if up_to_date:
        headers["stream-up-to-date"] = "true"
    if closed:
        headers["stream-closed"] = "true"
    return headers


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


def _location(request: AnyRequest) -> str:
    scope = request.scope
    base = str(request.base_url).rstrip("/")
    path = scope.get("raw_path", b"").decode("latin-1") or (scope["root_path"] + scope["path"])
    return base + path if path.startswith("/") else f"{base}/{path}"


def _preflight_headers(request: AnyRequest) -> dict[str, str]:
    wanted = request.headers.get("access-control-request-headers")
    return {
        "access-control-allow-methods": ALLOWED_METHODS,
        "access-control-allow-headers": f"{ALLOWED_HEADERS}, {wanted}"
        if wanted
        else ALLOWED_HEADERS,
        "access-control-max-age": "86400",
    }


def _raw_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send``, with ``extra`` headers on the response's start (errors included)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*extra, *message.get("headers", ())]
            message = cast("Message", {**message, "headers": headers})
        await send(message)

    return wrapped


async def _send(
    send: Send, status: int, headers: Mapping[str, str], body: bytes = b"", *, head: bool = False
) -> None:
    raw = _raw_headers(headers)
    if status not in (204, 304) and not head:
        raw.append((b"content-length", str(len(body)).encode()))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": raw,
    }
    await send(start)
    payload = body if status not in (204, 304) else b""
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def _send_json(
    send: Send, status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps({"error": kind, "detail": detail}).encode()
    out = dict(headers or {})
    out["content-type"] = "application/json"
    if status == 401:
        out["www-authenticate"] = "Bearer"
    await _send(send, status, out, body)


async def _read_body(request: AnyRequest, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Reply(413, "body_too_large", f"the body is over {limit} bytes")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise _Reply(400, "disconnected", "the client went away")
        if message["type"] != "http.request":
            continue
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise _Reply(413, "body_too_large", f"the body is over {limit} bytes")
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _disconnect(receive: Receive) -> None:
    """Returns when the client goes away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return

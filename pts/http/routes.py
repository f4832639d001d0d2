"""The plugin's stream routes (``/streams`` by default): create, view, watch, cancel, delete.

:class:`StreamRoutes` builds them from the component and the access object
(:mod:`pts.http.access`); :class:`~pts.http.plugin.PTSPlugin` mounts them.
Errors are answered from the one table, :mod:`pts.http.errors` (the plugin
registers its handler for the whole app).

Routes (``{id}`` is a stream's UUID; malformed → 400, unknown → 404):

- ``POST {path}`` with optional JSON ``{"client_id", "metadata"}`` → 201 ``{"id"}``
- ``GET {path}/{id}`` → 200 :class:`StreamView`
- ``GET {path}/{id}/events`` → SSE (:mod:`pts.http.sse`)
- ``POST {path}/{id}/cancel`` with optional JSON ``{"reason"}`` → 200 :class:`StreamView`
- ``DELETE {path}/{id}`` → 204
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias, cast

from litestar import Request, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from pts.body import json_with_text
from pts.core import PersistentTextStreaming
from pts.errors import InvalidInput
from pts.http.access import Access, Action
from pts.http.json_body import MAX_JSON_BODY_BYTES, check_json_body
from pts.http.sse import event_stream
from pts.models import Metadata, StreamBody, StreamInfo, StreamStatus

__all__ = [
    "CancelStream",
    "CreateStream",
    "CreatedStream",
    "StreamRoutes",
    "StreamView",
    "parse_stream_id",
    "resume_offset",
]

AnyRequest: TypeAlias = Request[Any, Any, Any]
AnyConnection: TypeAlias = ASGIConnection[Any, Any, Any, Any]
Guard: TypeAlias = Callable[[AnyConnection, Any], Awaitable[None]]

_STREAM_KEY = "pts_stream"
"""Where a route's guard leaves the stream it checked access to, for the handler."""


# -- wire types -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateStream:
    """Body of ``POST {path}`` (optional as a whole)."""

    client_id: str | None = None
    metadata: dict[str, Any] | None = None
    ttl: float | None = None
    """Seconds until the stream expires (see :meth:`~pts.PersistentTextStreaming.create_stream`)."""


@dataclass(frozen=True, slots=True)
class CancelStream:
    """Body of ``POST {path}/{id}/cancel`` (optional as a whole)."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CreatedStream:
    """Response of ``POST {path}``."""

    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class StreamView:
    """A stream as the routes return it: its state and its whole text so far."""

    id: uuid.UUID
    status: StreamStatus
    text: str
    size: int
    done: bool
    abort_reason: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_body(cls, body: StreamBody) -> StreamView:
        """The view of what :meth:`PersistentTextStreaming.get_stream_body` returned."""
        info = body.stream
        return cls(
            id=info.id,
            status=info.status,
            text=body.text,
            size=body.size,
            done=body.done,
            abort_reason=info.abort_reason,
            error=info.error,
            created_at=info.created_at,
            updated_at=info.updated_at,
            finished_at=info.finished_at,
        )


def parse_stream_id(raw: str) -> uuid.UUID:
    """A stream id from a path segment; raises InvalidInput (400) if it is not a UUID."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidInput(f"{raw[:100]!r} is not a stream id (a UUID)") from None


def resume_offset(last_event_id: str | None, offset: int | None) -> int:
    """Where an SSE subscription starts: ``Last-Event-ID`` (a reconnect) wins over ``?offset``.

    Raises InvalidInput (400) for an id that is no byte offset, or a negative offset.
    """
    if last_event_id is not None and last_event_id.strip():
        try:
            value = int(last_event_id)
        except ValueError:
            raise InvalidInput(f"Last-Event-ID {last_event_id!r} is not a byte offset") from None
    else:
        value = 0 if offset is None else offset
    if value < 0:
        raise InvalidInput(f"offset {value} is negative")
    return value


# -- the routes -------------------------------------------------------------------


class StreamRoutes:
    """The stream routes of one component, behind one access object.

    :param pts: the component the routes serve.
    :param access: who may do what (the same object as the Durable Streams app's).
    :param path: where the routes are mounted (``/streams``).
    :param sse_keepalive: seconds of silence before an SSE keep-alive comment.
    """

    def __init__(
        self,
        pts: PersistentTextStreaming,
        access: Access,
        *,
        path: str = "/streams",
        sse_keepalive: float = 15.0,
    ) -> None:
        self.pts = pts
        self.access = access
        self.path = "/" + path.strip("/")
        self.sse_keepalive = sse_keepalive

    async def stream_for(self, request: AnyRequest, action: Action, raw_id: str) -> StreamInfo:
        """The stream a route's path names (``raw_id``), once the request may act on it.

        Raises Unauthorized / Forbidden, InvalidInput for an id that is no UUID
        and StreamNotFound. The id is parsed inside the lookup, so that an
        anonymous caller gets its 401 first. For routes an app adds itself.
        """
        return await self.access.stream_for(
            request, action, lambda: self.pts.get_stream(parse_stream_id(raw_id))
        )

    def router(self) -> Router:
        """The routes, as one Litestar router at :attr:`path`."""
        return Router(
            path=self.path,
            route_handlers=[
                self._create_stream(),
                self._view_stream(),
                self._stream_events(),
                self._cancel_stream(),
                self._delete_stream(),
            ],
            tags=["pts"],
        )

    # -- guards: access is checked before Litestar reads and decodes a body, so a
    # caller without access costs no body read (see pts.http.json_body). Closures,
    # not bound methods: Litestar deep-copies a handler's guards, and would copy
    # the component with a bound method's ``self``.

    def _may_create(self) -> Guard:
        access = self.access

        async def may_create(connection: AnyConnection, _: object) -> None:
            request = cast("AnyRequest", connection)
            await access.check(request, "create", None)
            await check_json_body(request)

        return may_create

    def _may_cancel(self) -> Guard:
        routes = self

        async def may_cancel(connection: AnyConnection, _: object) -> None:
            request = cast("AnyRequest", connection)
            stream = await routes.stream_for(request, "cancel", request.path_params["stream_id"])
            request.scope.setdefault("state", {})[_STREAM_KEY] = stream
            await check_json_body(request)

        return may_cancel

    # -- handlers ----------------------------------------------------------------

    def _create_stream(self) -> HTTPRouteHandler:
        pts = self.pts

        @post(
            "/",
            status_code=HTTP_201_CREATED,
            guards=[self._may_create()],
            request_max_body_size=MAX_JSON_BODY_BYTES,
        )
        async def create_stream(
            request: AnyRequest, data: Annotated[CreateStream | None, Body()] = None
        ) -> CreatedStream:
            """Create a pending stream."""
            body = data or CreateStream()
            stream_id = await pts.create_stream(
                client_id=body.client_id,
                metadata=cast("Metadata | None", body.metadata),
                ttl=body.ttl,
            )
            return CreatedStream(id=stream_id)

        return create_stream

    def _view_stream(self) -> HTTPRouteHandler:
        routes = self

        @get("/{stream_id:str}")
        async def view_stream(
            request: AnyRequest, stream_id: FromPath[str]
        ) -> Response[StreamView]:
            """A stream's state and its whole text so far."""
            stream = await routes.stream_for(request, "view", stream_id)
            return await view_response(routes.pts, stream)

        return view_stream

    def _cancel_stream(self) -> HTTPRouteHandler:
        pts = self.pts

        @post(
            "/{stream_id:str}/cancel",
            status_code=HTTP_200_OK,
            guards=[self._may_cancel()],
            request_max_body_size=MAX_JSON_BODY_BYTES,
        )
        async def cancel_stream(
            request: AnyRequest,
            stream_id: FromPath[str],
            data: Annotated[CancelStream | None, Body()] = None,
        ) -> Response[StreamView]:
            """Abort the stream (a finished stream is left as it is); returns its state."""
            stream: StreamInfo = request.scope["state"][_STREAM_KEY]
            info = await pts.cancel(stream.id, reason=data.reason if data else None)
            return await view_response(pts, info)

        return cancel_stream

    def _stream_events(self) -> HTTPRouteHandler:
        routes = self

        @get("/{stream_id:str}/events")
        async def stream_events(
            request: AnyRequest,
            stream_id: FromPath[str],
            offset: FromQuery[int | None] = None,
            format: FromQuery[Literal["text", "html"]] = "text",  # the query parameter's name
        ) -> Stream:
            """Watch the stream live over SSE from byte ``offset`` (or ``Last-Event-ID``).

            Events ``text`` (data: new text, id: end byte offset) and ``status``
            (JSON); ``?format=html`` sends escaped HTML for htmx instead.
            """
            stream = await routes.stream_for(request, "view", stream_id)
            start = resume_offset(request.headers.get("last-event-id"), offset)
            return await event_stream(
                routes.pts,
                stream.id,
                start,
                as_html=format == "html",
                keepalive=routes.sse_keepalive,
            )

        return stream_events

    def _delete_stream(self) -> HTTPRouteHandler:
        routes = self

        @delete("/{stream_id:str}")
        async def delete_stream(request: AnyRequest, stream_id: FromPath[str]) -> None:
            """Delete the stream and its text."""
            stream = await routes.stream_for(request, "delete", stream_id)
            await routes.pts.delete_stream(stream.id)

        return delete_stream


async def view_response(pts: PersistentTextStreaming, info: StreamInfo) -> Response[StreamView]:
    """The :class:`StreamView` of a stream, its text read in pages of ``read_page_bytes``.

    A text that fits in one page is an ordinary JSON response; a longer one is
    the very same document, streamed as its pages are read (memory stays at a
    page however long the stream). A failure after the response started (the
    stream deleted meanwhile) ends the connection early: the client never gets
    a well-formed but truncated document.
    """
    body = await pts.body_pages(info)
    if body.whole is not None:
        return Response(StreamView.from_body(StreamBody(stream=body.stream, text=body.whole)))
    envelope = StreamView.from_body(StreamBody(stream=body.stream, text=""))
    stream = Stream(json_with_text(envelope, "text", body.texts()), media_type=MediaType.JSON)
    # The same document as Response[StreamView] (and so in the OpenAPI schema), in pages.
    return cast("Response[StreamView]", stream)

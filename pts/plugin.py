"""``PTSPlugin``: pts in a Litestar app.

One plugin wires everything an app needs::

    from litestar import Litestar
    from pts import PTSPlugin
    from pts.core import PersistentTextStreaming

    pts = PersistentTextStreaming()
    app = Litestar(plugins=[PTSPlugin(pts, authorize=my_authorize)])

- **lifespan**: ``pts.open()`` when the app starts, ``pts.close()`` when it stops;
- **dependency injection**: the component is provided under the name ``pts``; a
  handler declares ``pts: NamedDependency[PersistentTextStreaming]`` (from
  ``litestar.di``; a bare ``pts: PersistentTextStreaming`` works too, but
  Litestar 2.25 deprecates undeclared dependencies with a warning);
- **routes** under ``path`` (default ``/streams``): create, read, cancel, delete;
- **error mapping** for the whole app: every :class:`~pts.errors.PTSError` a
  handler raises becomes a JSON response ``{"error": kind, "detail": message}``
  with the status of the one table, :data:`pts.http.errors.ERRORS` (shared with
  the Durable Streams app); any other exception that
  no handler of the app's takes is a 500 ``internal_error`` in the same shape,
  logged once with its traceback (:func:`internal_error_response`).


**Authorization** (:mod:`pts.http.access`). Streams are private by default. Every
route asks ``authorize(request, action, stream)`` (sync or async, returns ``True``
to allow; anything else denies with 403). Without a hook, only requests bearing
``Authorization: Bearer <PTS_ADMIN_TOKEN>`` are allowed (401 otherwise); with
``PTS_ADMIN_TOKEN`` unset or empty, nothing is.

The access control, the error table and the Durable Streams app live in
:mod:`pts.http` and :mod:`pts.durable`; this module wires them into Litestar
and re-exports their names as before.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias, cast

from litestar import Litestar, Request, Response, Router, delete, get, post
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.enums import MediaType
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.params import Body, FromPath, FromQuery
from litestar.plugins import InitPluginProtocol
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Receive, Scope, Send

from pts.body import json_with_text
from pts.core import PersistentTextStreaming
from pts.durable import DurableStreams, ProtocolSettings
from pts.errors import ConfigurationError, InvalidInput, PTSError, SchemaNotMigrated
from pts.http.access import (
    ADMIN_TOKEN_ENV,
    Access,
    Action,
    Authorize,
    Forbidden,
    Unauthorized,
    allow_everything,
)
from pts.http.errors import error_response, error_status, internal_error_response
from pts.json_body import MAX_JSON_BODY_BYTES, check_json_body
from pts.models import Metadata, StreamBody, StreamInfo, StreamStatus
from pts.sse import event_stream

__all__ = [
    "ADMIN_TOKEN_ENV",
    "Action",
    "Authorize",
    "CancelStream",
    "CreateStream",
    "CreatedStream",
    "Forbidden",
    "PTSPlugin",
    "StreamView",
    "Unauthorized",
    "allow_everything",
    "error_response",
    "error_status",
    "internal_error_response",
    "parse_stream_id",
]

logger = logging.getLogger("pts.plugin")

_STREAM_KEY = "pts_stream"
"""Where a route's guard leaves the stream it checked access to, for the handler."""

AnyRequest: TypeAlias = Request[Any, Any, Any]


# -- wire types -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateStream:
    """Body of ``POST {path}`` (optional as a whole)."""

    client_id: str | None = None
    metadata: dict[str, Any] | None = None


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


# -- the plugin -------------------------------------------------------------------


class PTSPlugin(InitPluginProtocol):
    """Litestar plugin: pts's lifespan, dependency, routes and error mapping.

    :param pts: the component; the plugin opens and closes it with the app.
    :param path: where the stream routes are mounted.
    :param authorize: decides who may do what (see :data:`Authorize`). Without
        it, only ``Authorization: Bearer $PTS_ADMIN_TOKEN`` is allowed.
    :param sse_keepalive: seconds of silence before an SSE keep-alive comment.
    :param durable_streams_path: where the Durable Streams protocol is mounted
        (:mod:`pts.durable`); ``None`` leaves it out.
    :param long_poll_timeout: seconds a protocol long-poll waits for data.
    :param max_body_size: the largest protocol request body accepted (413 above).
    :param cors_origins: which browser origins may read the protocol's responses:
        ``"*"`` (any; no credentials are involved), a list of origins, or ``None``
        (no CORS headers: same-origin pages only).
    :param migrate: bring the database's pts schema up to date when the app
        starts (``True``), or only check it (``False``); ``None`` (default):
        migrate the embedded Postgres, check a configured database. Migrations
        run under an advisory lock, so several processes may start at once. A
        schema that is missing or older than the code, unmigrated, fails the
        app's startup with :class:`~pts.errors.SchemaNotMigrated` (one line
        saying what to run), never a 500 at the first request.

    Routes (``{id}`` is a stream's UUID; malformed → 400, unknown → 404):

    - ``POST {path}`` with optional JSON ``{"client_id", "metadata"}`` → 201 ``{"id"}``
    - ``GET {path}/{id}`` → 200 :class:`StreamView`
    - ``POST {path}/{id}/cancel`` with optional JSON ``{"reason"}`` → 200 :class:`StreamView`
    - ``DELETE {path}/{id}`` → 204
    - ``{durable_streams_path}/{stream path}``: the Durable Streams protocol
      (PUT, POST, GET with long-poll and SSE, HEAD, DELETE); reads ask for
      ``view``, PUT for ``create``, POST for ``drive``, DELETE for ``delete``
    """

    def __init__(
        self,
        pts: PersistentTextStreaming,
        path: str = "/streams",
        authorize: Authorize | None = None,
        *,
        sse_keepalive: float = 15.0,
        durable_streams_path: str | None = "/v1/stream",
        long_poll_timeout: float = 30.0,
        max_body_size: int = 10 * 1024 * 1024,
        cors_origins: Sequence[str] | Literal["*"] | None = "*",
        migrate: bool | None = None,
    ) -> None:
        if long_poll_timeout <= 0:
            raise ConfigurationError("long_poll_timeout must be positive")
        self.pts = pts
        self.path = "/" + path.strip("/")
        self.access = Access.from_env(authorize)
        """Who may do what: the hook, or else the admin token (shared with the protocol app)."""
        self.sse_keepalive = sse_keepalive
        self.durable_streams_path = (
            None if durable_streams_path is None else "/" + durable_streams_path.strip("/")
        )
        self.long_poll_timeout = long_poll_timeout
        self.migrate = migrate
        self.max_body_size = max_body_size
        self.cors_origins: frozenset[str] | Literal["*"] | None = (
            cors_origins if cors_origins is None or cors_origins == "*" else frozenset(cors_origins)
        )
        if self.access.refuses_everything:
            logger.warning(
                "PTSPlugin has no authorize hook and %s is not set: every request to %s "
                "will be refused (401)",
                ADMIN_TOKEN_ENV,
                self.path,
            )

    # -- Litestar -------------------------------------------------------------

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the lifespan, the ``pts`` dependency, the routes and the error handler."""
        app_config.lifespan.append(self._lifespan)
        app_config.dependencies["pts"] = Provide(self._provide_pts, sync_to_thread=False)
        app_config.route_handlers.append(self._router())
        if self.durable_streams_path is not None:
            app_config.route_handlers.append(self._durable_streams(self.durable_streams_path))
        # An app's own handler for PTSError, if it registered one, wins.
        app_config.exception_handlers.setdefault(PTSError, error_response)
        # Anything else unexpected: logged, and answered in JSON. Registered for
        # the status, which Litestar consults last: a handler of the app's for
        # the exception's type (or for 500) wins; HTTP errors (404...) keep theirs.
        app_config.exception_handlers.setdefault(
            HTTP_500_INTERNAL_SERVER_ERROR, internal_error_response
        )
        return app_config

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        try:
            await self.pts.open(migrate=self.migrate)
        except SchemaNotMigrated as exc:
            # The one line to act on, logged on its own (the server's traceback follows).
            logger.error("pts cannot start: %s", exc)
            raise SchemaNotMigrated(str(exc)) from None
        try:
            yield
        finally:
            await self.pts.close()

    def _provide_pts(self) -> PersistentTextStreaming:
        return self.pts

    @property
    def authorize(self) -> Authorize | None:
        """The ``authorize`` hook, ``None`` without one (only the admin token is let through)."""
        return self.access.authorize

    @property
    def allows_everything(self) -> bool:
        """No access control: routes need not look a stream up just for the hook."""
        return self.authorize is not None and not self.access.needs_stream

    # -- authorization ---------------------------------------------------------

    def has_admin_token(self, request: AnyRequest) -> bool:
        """True if the request bears ``Authorization: Bearer $PTS_ADMIN_TOKEN``."""
        return self.access.has_admin_token(request)

    async def check(self, request: AnyRequest, action: Action, stream: StreamInfo | None) -> None:
        """Allow the request or raise: Forbidden (403) if the hook denies,
        Unauthorized (401) without a hook and without the admin token.

        For routes an app adds itself (e.g. one that drives streams).
        """
        await self.access.check(request, action, stream)

    async def _stream_for(self, request: AnyRequest, action: Action, raw_id: str) -> StreamInfo:
        """The stream a route names, once the request may act on it."""
        # The id is parsed inside the lookup: an anonymous caller gets its 401 first.
        return await self.access.stream_for(
            request, action, lambda: self.pts.get_stream(parse_stream_id(raw_id))
        )

    # -- routes ------------------------------------------------------------------

    def _durable_streams(self, mount: str) -> ASGIRouteHandler:
        """The Durable Streams protocol (:mod:`pts.durable`) as a mounted ASGI app."""
        settings = ProtocolSettings(
            long_poll_timeout=self.long_poll_timeout,
            max_body_size=self.max_body_size,
            cors_origins=self.cors_origins,
        )
        app = DurableStreams(self.pts, mount, access=self.access, settings=settings)

        @asgi(mount, is_mount=True, copy_scope=True)
        async def durable_streams(scope: Scope, receive: Receive, send: Send) -> None:
            await app(cast("dict[str, Any]", scope), receive, send)  # type: ignore[arg-type]

        return durable_streams

    def _router(self) -> Router:
        plugin = self

        # Access is checked in guards, which run before Litestar reads and decodes
        # a body: a caller without access costs no body read (see pts.json_body).
        async def may_create(connection: ASGIConnection[Any, Any, Any, Any], _: object) -> None:
            request = cast("AnyRequest", connection)
            await plugin.check(request, "create", None)
            await check_json_body(request)

        async def may_cancel(connection: ASGIConnection[Any, Any, Any, Any], _: object) -> None:
            request = cast("AnyRequest", connection)
            stream = await plugin._stream_for(request, "cancel", request.path_params["stream_id"])
            request.scope.setdefault("state", {})[_STREAM_KEY] = stream
            await check_json_body(request)

        @post(
            "/",
            status_code=HTTP_201_CREATED,
            guards=[may_create],
            request_max_body_size=MAX_JSON_BODY_BYTES,
        )
        async def create_stream(
            request: AnyRequest, data: Annotated[CreateStream | None, Body()] = None
        ) -> CreatedStream:
            """Create a pending stream."""
            body = data or CreateStream()
            stream_id = await plugin.pts.create_stream(
                client_id=body.client_id, metadata=cast("Metadata | None", body.metadata)
            )
            return CreatedStream(id=stream_id)

        @get("/{stream_id:str}")
        async def view_stream(
            request: AnyRequest, stream_id: FromPath[str]
        ) -> Response[StreamView]:
            """A stream's state and its whole text so far."""
            stream = await plugin._stream_for(request, "view", stream_id)
            return await _view_response(plugin.pts, stream)

        @post(
            "/{stream_id:str}/cancel",
            status_code=HTTP_200_OK,
            guards=[may_cancel],
            request_max_body_size=MAX_JSON_BODY_BYTES,
        )
        async def cancel_stream(
            request: AnyRequest,
            stream_id: FromPath[str],
            data: Annotated[CancelStream | None, Body()] = None,
        ) -> Response[StreamView]:
            """Abort the stream (a finished stream is left as it is); returns its state."""
            stream: StreamInfo = request.scope["state"][_STREAM_KEY]
            info = await plugin.pts.cancel(stream.id, reason=data.reason if data else None)
            return await _view_response(plugin.pts, info)

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
            stream = await plugin._stream_for(request, "view", stream_id)
            start = _resume_offset(request.headers.get("last-event-id"), offset)
            return await event_stream(
                plugin.pts,
                stream.id,
                start,
                as_html=format == "html",
                keepalive=plugin.sse_keepalive,
            )

        @delete("/{stream_id:str}")
        async def delete_stream(request: AnyRequest, stream_id: FromPath[str]) -> None:
            """Delete the stream and its text."""
            stream = await plugin._stream_for(request, "delete", stream_id)
            await plugin.pts.delete_stream(stream.id)

        return Router(
            path=self.path,
            route_handlers=[
                create_stream,
                view_stream,
                stream_events,
                cancel_stream,
                delete_stream,
            ],
            tags=["pts"],
        )


async def _view_response(pts: PersistentTextStreaming, info: StreamInfo) -> Response[StreamView]:
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


def _resume_offset(last_event_id: str | None, offset: int | None) -> int:
    """Where an SSE subscription starts: ``Last-Event-ID`` (a reconnect) wins over ``?offset``."""
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

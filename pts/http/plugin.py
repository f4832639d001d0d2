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
- **metrics** (``metrics=True``, needs ``pip install 'pts[metrics]'``): ``GET
  /metrics`` in the Prometheus text format (:mod:`pts.http.metrics`);
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

This module is wiring only: the routes are :mod:`pts.http.routes`, access
:mod:`pts.http.access`, the error table :mod:`pts.http.errors`, the Durable
Streams app :mod:`pts.http.durable` (built from the component, the access
object and its settings). :mod:`pts.plugin` re-exports the names as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeAlias, cast

from litestar import Litestar, Request, Response
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.handlers import ASGIRouteHandler, HTTPRouteHandler, asgi
from litestar.plugins import InitPluginProtocol
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Receive, Scope, Send

from pts.core import PersistentTextStreaming
from pts.errors import ConfigurationError, PTSError, SchemaNotMigrated
from pts.http.access import ADMIN_TOKEN_ENV, Access, Action, Authorize
from pts.http.drain import follow_sigterm
from pts.http.durable import DurableStreams, ProtocolSettings
from pts.http.errors import error_response, internal_error_response
from pts.http.routes import StreamRoutes
from pts.models import StreamInfo

__all__ = ["METRICS_EXTRA", "PTSPlugin"]

logger = logging.getLogger("pts.plugin")

AnyRequest: TypeAlias = Request[Any, Any, Any]
ErrorHandler: TypeAlias = Callable[[AnyRequest, Any], Response[dict[str, Any]]]

METRICS_EXTRA = "pip install 'pts[metrics]'"
"""What brings prometheus-client, which ``metrics=True`` needs."""


# -- the plugin -------------------------------------------------------------------


class PTSPlugin(InitPluginProtocol):
    """Litestar plugin: pts's lifespan, dependency, routes and error mapping.

    :param pts: the component; the plugin opens and closes it with the app.
    :param path: where the stream routes are mounted.
    :param authorize: decides who may do what (see :data:`Authorize`). Without
        it, only ``Authorization: Bearer $PTS_ADMIN_TOKEN`` is allowed.
    :param sse_keepalive: seconds of silence before an SSE keep-alive comment.
    :param durable_streams_path: where the Durable Streams protocol is mounted
        (:mod:`pts.http.durable`); ``None`` leaves it out.
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
    :param metrics: mount ``GET {metrics_path}``: this component's figures
        (``pts.stats()``) and the process's, in the Prometheus text format
        (:mod:`pts.http.metrics`). Needs prometheus-client (``pip install
        'pts[metrics]'``): ConfigurationError without it. The route has no
        access check of its own: the app's guards and middleware apply.
    :param metrics_path: where the metrics are mounted.

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
        metrics: bool = False,
        metrics_path: str = "/metrics",
    ) -> None:
        if long_poll_timeout <= 0:
            raise ConfigurationError("long_poll_timeout must be positive")
        self.metrics_route: HTTPRouteHandler | None = (
            _metrics_route(pts, "/" + metrics_path.strip("/")) if metrics else None
        )
        """``GET /metrics`` (``metrics=True``), else ``None``."""
        self.pts = pts
        self.path = "/" + path.strip("/")
        self.access = Access.from_env(authorize)
        """Who may do what: the hook, or else the admin token (shared with the protocol app)."""
        self.sse_keepalive = sse_keepalive
        self.routes = StreamRoutes(pts, self.access, path=self.path, sse_keepalive=sse_keepalive)
        """The stream routes (``/streams``), behind the same access object."""
        self.durable_streams_path = (
            None if durable_streams_path is None else "/" + durable_streams_path.strip("/")
        )
        self.durable_streams_app: DurableStreams | None = None
        """The protocol's ASGI app, once the plugin has mounted it (at app init)."""
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
        app_config.route_handlers.append(self.routes.router())
        if self.durable_streams_path is not None:
            app_config.route_handlers.append(self._durable_streams(self.durable_streams_path))
        if self.metrics_route is not None:
            app_config.route_handlers.append(self.metrics_route)
        # An app's own handler for PTSError, if it registered one, wins.
        app_config.exception_handlers.setdefault(PTSError, self._counted(error_response))
        # Anything else unexpected: logged, and answered in JSON. Registered for
        # the status, which Litestar consults last: a handler of the app's for
        # the exception's type (or for 500) wins; HTTP errors (404...) keep theirs.
        app_config.exception_handlers.setdefault(
            HTTP_500_INTERNAL_SERVER_ERROR, self._counted(internal_error_response)
        )
        return app_config

    def _counted(self, handler: ErrorHandler) -> ErrorHandler:
        """``handler``, counting the 5xx it answers in ``pts.stats().request_failures``."""
        counters = self.pts.counters

        def counted(request: AnyRequest, exc: Any) -> Response[dict[str, Any]]:
            response = handler(request, exc)
            if (response.status_code or 0) >= HTTP_500_INTERNAL_SERVER_ERROR:
                counters.request_failed(str(response.content.get("error", "internal_error")))
            return response

        return counted

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        try:
            await self.pts.open(migrate=self.migrate)
        except SchemaNotMigrated as exc:
            # The one line to act on, logged on its own (the server's traceback follows).
            logger.error("pts cannot start: %s", exc)
            raise SchemaNotMigrated(str(exc)) from None
        restore_sigterm = follow_sigterm(self.pts)
        try:
            yield
        finally:
            restore_sigterm()
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

    @property
    def protocol_settings(self) -> ProtocolSettings:
        """The Durable Streams app's settings, from the plugin's options."""
        return ProtocolSettings(
            long_poll_timeout=self.long_poll_timeout,
            max_body_size=self.max_body_size,
            cors_origins=self.cors_origins,
        )

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

    # -- routes ------------------------------------------------------------------

    def _durable_streams(self, mount: str) -> ASGIRouteHandler:
        """The Durable Streams protocol (:mod:`pts.http.durable`) as a mounted ASGI app."""
        app = DurableStreams(self.pts, mount, access=self.access, settings=self.protocol_settings)
        self.durable_streams_app = app

        @asgi(mount, is_mount=True, copy_scope=True)
        async def durable_streams(scope: Scope, receive: Receive, send: Send) -> None:
            await app(cast("dict[str, Any]", scope), receive, send)  # type: ignore[arg-type]

        return durable_streams


def _metrics_route(pts: PersistentTextStreaming, path: str) -> HTTPRouteHandler:
    """``GET path`` with ``pts``'s metrics; ConfigurationError without prometheus-client."""
    try:
        import prometheus_client  # noqa: F401 - the optional extra, checked before use
    except ImportError:
        raise ConfigurationError(
            f"metrics need the prometheus-client package: {METRICS_EXTRA}"
        ) from None
    from pts.http.metrics import metrics_route, registry_for

    return metrics_route(registry_for(pts), path)

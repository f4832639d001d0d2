"""The Durable Streams HTTP protocol, served from pts's tables.

Mounted by :class:`~pts.plugin.PTSPlugin` at ``/v1/stream`` (configurable) as
a small ASGI app: the protocol fixes status codes, header names and exact
content types that a framework's conveniences would get in the way of (an
added ``; charset=``, a ``data: `` with a space), so it writes its responses
itself (:mod:`pts.http.durable.responses`). This module dispatches; each verb
has its module: :mod:`~pts.http.durable.create` (PUT),
:mod:`~pts.http.durable.append` (POST), :mod:`~pts.http.durable.read` (GET,
HEAD; long-poll and SSE in :mod:`~pts.http.durable.live`) and
:mod:`~pts.http.durable.delete`; the wire format and every input bound are in
:mod:`pts.http.durable.wire`.

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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

from litestar import Request
from litestar.types import Receive, Scope, Send

from pts.errors import MethodNotAllowed
from pts.http.access import Access
from pts.http.durable import wire
from pts.http.durable.append import post
from pts.http.durable.context import Context, Target
from pts.http.durable.create import put
from pts.http.durable.delete import delete
from pts.http.durable.read import get, head
from pts.http.durable.responses import (
    ALLOWED_METHODS,
    EXPOSE_HEADER,
    SECURITY_HEADERS,
    AnyRequest,
    adding_headers,
    preflight_headers,
    send_error,
    send_response,
)
from pts.http.durable.settings import ProtocolSettings
from pts.http.errors import exception_content, is_logged
from pts.logsafe import log_request_failure

if TYPE_CHECKING:
    from pts.core import PersistentTextStreaming

__all__ = ["DurableStreams"]

logger = logging.getLogger("pts.durable")

Handler: TypeAlias = Callable[[Context, AnyRequest, Target, Send], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    "GET": get,
    "HEAD": head,
    "PUT": put,
    "POST": post,
    "DELETE": delete,
}
"""The protocol's methods (OPTIONS, the CORS preflight, is answered before a path is read)."""

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


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
        self.context = Context(pts, self.mount, access, self.settings)
        """What the verbs' handlers share."""
        # The headers every response gets, built once unless they depend on the Origin.
        self._every_response: list[tuple[bytes, bytes]] | None = None
        if self.settings.cors_origins is None or self.settings.cors_origins == "*":
            self._every_response = SECURITY_HEADERS + self._cors_headers(None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request: AnyRequest = Request(scope, receive)
        extra = self._every_response
        if extra is None:
            extra = SECURITY_HEADERS + self._cors_headers(request)
        send = adding_headers(send, extra)
        try:
            await self._dispatch(request, scope, send)
        except Exception as exc:  # noqa: BLE001 - answered from the one table; 5xx logged
            # The protocol's own 500s never name the exception, even in debug mode.
            status, content, headers = exception_content(
                exc, debug=_debug(scope), name_internal=False
            )
            if is_logged(status, exc):
                log_request_failure(logger, request.method, scope["path"], exc)
                self.pts.counters.request_failed(content["error"])
            await send_error(send, status, content, headers)

    def _cors_headers(self, request: AnyRequest | None) -> list[tuple[bytes, bytes]]:
        """CORS for the settings' ``cors_origins``: ``*``, a list of origins, or none.

        The request is only read for a list of origins (None: it is not).
        """
        allowed = self.settings.cors_origins
        if allowed is None:
            return []
        if allowed == "*":
            return [(b"access-control-allow-origin", b"*"), EXPOSE_HEADER]
        assert request is not None
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
        target = Target.parse(scope["path"])
        handler = HANDLERS.get(method)
        if handler is None:
            raise MethodNotAllowed(f"{method} is not a protocol method", {"allow": ALLOWED_METHODS})
        if target.read_only and method not in READ_ONLY_METHODS:
            raise MethodNotAllowed(
                "pts streams are written by their driver; this path is read-only",
                {"allow": "GET, HEAD, OPTIONS"},
            )
        await handler(self.context, request, target, send)


def _debug(scope: Scope) -> bool:
    """Whether the Litestar app this is mounted in runs in debug mode (a 500 shows its message)."""
    app = scope.get("app")
    return bool(getattr(app, "debug", False))

"""The Durable Streams protocol's requests handed straight to its app, past Litestar's layers.

The protocol app (:class:`~pts.http.durable.DurableStreams`) is mounted in
Litestar like any route, and answers every one of its requests itself: its
access checks, its errors, its headers. What Litestar does on the way there
for such a request (its exception middleware, routing, the mount's scope copy)
changes nothing in the answer, but cost about an eighth of the server's CPU
per append at 75 connections. :class:`ProtocolFastPath` is an ASGI app around
the Litestar app that takes the protocol's ordinary requests to the protocol
app directly and passes everything else (other routes, the lifespan, any path
out of the ordinary) to Litestar unchanged. ``pts serve`` runs it
(:func:`create_served_app`); an app of your own may wrap itself the same way.

It only takes a request past Litestar when Litestar would hand that request to
the protocol app untouched, and the answer would be the same:

- the app has no middleware of its own but pts's loopback guard (``--no-auth``;
  applied here, the same way), no app-level guards, no ``before_send`` hooks
  and no route of its own below the mount; otherwise every request goes
  through Litestar;
- the path lies under the mount and is already normal (no ``//``), the scope
  has no ``root_path``, and the ``Host`` header (if any) is made only of
  characters that Litestar's own check allows;
- a request the loopback guard refuses goes through Litestar, which refuses it
  as it always did.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send

from pts.http.access import Forbidden
from pts.http.app import create_app
from pts.http.noauth import LoopbackGuard
from pts.http.plugin import PTSPlugin

if TYPE_CHECKING:
    from pts.http.durable import DurableStreams

__all__ = ["ProtocolFastPath", "create_served_app"]

_PLAIN_HOST = re.compile(rb"[0-9A-Za-z.:\[\]-]*")
"""Host headers taken on the fast path: a subset of what Litestar lets through."""


class ProtocolFastPath:
    """``app``, with the Durable Streams protocol's ordinary requests taken to its app directly.

    :param app: a Litestar app with a :class:`~pts.http.plugin.PTSPlugin` that
        mounts the protocol. Without one, or with middleware, guards,
        ``before_send`` hooks or routes below the mount that would see the
        protocol's requests, every request goes to ``app`` as it is
        (:attr:`active` is False).
    """

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self._protocol: DurableStreams | None = None
        self._guard: LoopbackGuard | None = None
        self._prefix = ""
        try:
            protocol = app.plugins.get(PTSPlugin).durable_streams_app
        except KeyError:  # no PTSPlugin
            protocol = None
        others = [m for m in app.middleware if not isinstance(m, LoopbackGuard)]
        guards = [m for m in app.middleware if isinstance(m, LoopbackGuard)]
        if protocol is None or others or len(guards) > 1 or app.guards or app.before_send:
            return
        # A route of the app's own below the mount: Litestar routes its paths to it.
        if any(route.path.startswith(protocol.mount + "/") for route in app.routes):
            return
        self._protocol = protocol
        self._guard = guards[0] if guards else None
        self._prefix = protocol.mount + "/"

    @property
    def active(self) -> bool:
        """Whether any request takes the fast path (else all go through Litestar)."""
        return self._protocol is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protocol = self._protocol
        if protocol is None or not self._takes(scope):
            await self.app(scope, receive, send)
            return
        # What Litestar's mount hands the protocol app: the path below the mount,
        # and the app in the scope (its debug flag decides what a 500 shows).
        inner = dict(scope)
        inner["path"] = scope["path"][len(self._prefix) - 1 :]
        inner["app"] = inner["litestar_app"] = self.app
        inner.setdefault("state", {})
        await protocol(inner, receive, send)  # type: ignore[arg-type]

    def _takes(self, scope: Scope) -> bool:
        if scope["type"] != ScopeType.HTTP or scope.get("root_path"):
            return False
        path: str = scope["path"]
        if not path.startswith(self._prefix) or "//" in path:
            return False
        for name, value in scope["headers"]:
            if name == b"host" and _PLAIN_HOST.fullmatch(value) is None:
                return False
        if self._guard is not None:
            try:
                self._guard.check_raw(scope["headers"])
            except Forbidden:
                return False  # Litestar answers the refusal, as it always did
        return True


def create_served_app() -> ProtocolFastPath:
    """What ``pts serve`` runs: :func:`~pts.http.app.create_app` (configured from the
    environment), with the protocol's requests taken past Litestar's layers."""
    return ProtocolFastPath(create_app())

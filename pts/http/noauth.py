"""What keeps a ``--no-auth`` server to its own machine: loopback ``Host`` and ``Origin`` only.

Binding a loopback address is not enough. A browser on the same machine
reaches the server too, from any page it shows: through DNS rebinding (a name
the attacker controls, resolved to 127.0.0.1, so the request carries
``Host: evil.example``), or directly with a "simple" cross-origin request (a
form post, a ``text/plain`` fetch), which needs no CORS preflight and is
executed even though the page may not read the answer. :class:`LoopbackGuard`
refuses both before any route runs: a ``Host`` that is not a loopback name or
address, and an ``Origin`` that is neither loopback nor explicitly allowed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from pts.http.access import Forbidden
from pts.http.loopback import is_loopback_host, is_loopback_origin, split_host_header

__all__ = ["LoopbackGuard", "host_and_origin_headers"]

_ASKED = (b"host", b"origin")
_VERDICTS = 256
"""How many distinct sets of ``Host``/``Origin`` headers a guard remembers as allowed."""


def host_and_origin_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[tuple[bytes, bytes], ...]:
    """The ``Host`` and ``Origin`` headers of raw ASGI ones, in order, their names lower-cased.

    ``bytes.lower`` only folds ASCII letters, but no other Latin-1 character
    lower-cases to one, so this finds exactly the headers a ``str.lower`` of the
    decoded names would.
    """
    return tuple(
        (lowered, value)
        for name, value in headers
        if len(name) in (4, 6) and (lowered := name.lower()) in _ASKED
    )


class LoopbackGuard(ASGIMiddleware):
    """Refuse (403 ``forbidden``) HTTP requests from anywhere but this machine's own pages.

    :param allowed_origins: origins let through besides loopback ones (an
        explicit opt-in, e.g. ``pts serve --cors-origin``); ``"*"`` in it lets
        every origin through (the ``Host`` check stays).
    """

    def __init__(self, allowed_origins: Collection[str] = ()) -> None:
        self.allowed_origins = frozenset(allowed_origins)
        # Every request of a browser or client names the same few hosts and origins:
        # the verdict on them is remembered (allowed ones only; a refusal is rare,
        # and judged again each time). Parsing an address costs more than the rest
        # of a request's routing.
        self._allowed: set[tuple[tuple[bytes, bytes], ...]] = set()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] == ScopeType.HTTP:
            self.check_raw(scope["headers"])
        await next_app(scope, receive, send)

    def check_raw(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """:meth:`check` for raw ASGI headers, remembering the verdicts that allow."""
        asked = host_and_origin_headers(headers)
        if asked in self._allowed:
            return
        self.check([(name.decode("latin-1"), value.decode("latin-1")) for name, value in asked])
        if len(self._allowed) >= _VERDICTS:
            self._allowed.clear()  # bounded: many distinct hosts only cost their parsing
        self._allowed.add(asked)

    def check(self, headers: Sequence[tuple[str, str]]) -> None:
        """Raise Forbidden unless ``headers`` (lower-case names) come from a loopback page.

        Every ``Host`` and ``Origin`` header counts (a duplicate is no way around
        the check); a request without ``Host`` is refused.
        """
        hosts = [value for name, value in headers if name == "host"]
        origins = [value for name, value in headers if name == "origin"]
        if not hosts or not all(_loopback_host_header(host) for host in hosts):
            raise Forbidden(
                "this server runs without access control (--no-auth): it answers requests "
                "for localhost, 127.0.0.1 or [::1] only"
            )
        if not all(self._allowed_origin(origin) for origin in origins):
            raise Forbidden(
                "this server runs without access control (--no-auth): it refuses requests "
                "from pages of other origins unless they are allowed (--cors-origin)"
            )

    def _allowed_origin(self, origin: str) -> bool:
        return (
            is_loopback_origin(origin)
            or "*" in self.allowed_origins
            or origin in self.allowed_origins
        )


def _loopback_host_header(value: str) -> bool:
    host = split_host_header(value)
    return host is not None and is_loopback_host(host)

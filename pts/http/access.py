"""Access control for every pts route: the ``authorize`` hook, its actions, the admin token.

Streams are private by default. Every route asks ``authorize(request, action,
stream)`` (sync or async, returns ``True`` to allow; anything else denies with
403). Without a hook, only requests bearing ``Authorization: Bearer
<PTS_ADMIN_TOKEN>`` are allowed (401 otherwise); with ``PTS_ADMIN_TOKEN``
unset or empty, nothing is.
"""

from __future__ import annotations

import hmac
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeAlias

from litestar import Request

from pts.errors import PTSError
from pts.models import StreamInfo

__all__ = [
    "ADMIN_TOKEN_ENV",
    "Access",
    "Action",
    "AllowEverything",
    "Authorize",
    "Forbidden",
    "Unauthorized",
    "allow_everything",
]

ADMIN_TOKEN_ENV = "PTS_ADMIN_TOKEN"
"""The environment variable holding the admin token (read when the plugin is built)."""

AnyRequest: TypeAlias = Request[Any, Any, Any]

Action: TypeAlias = Literal["create", "view", "drive", "cancel", "delete"]
"""What a request wants to do with a stream."""

Authorize: TypeAlias = Callable[[AnyRequest, Action, StreamInfo | None], bool | Awaitable[bool]]
"""``authorize(request, action, stream) -> bool`` (sync or async).

``stream`` is the stream concerned, ``None`` for ``"create"``. Return ``True``
to allow; any other value denies (403). With a hook, the hook alone decides
(it may call :meth:`PTSPlugin.has_admin_token` to let the admin token through).
A hook with an attribute ``needs_stream = False`` declares that it never looks
at ``stream``: routes may then pass ``None`` rather than look the stream up
for it (see :class:`Access`).
"""


class Unauthorized(PTSError):
    """The request carries no valid credentials (401)."""


class Forbidden(PTSError):
    """The request's credentials do not allow this action (403)."""


class AllowEverything:
    """The ``authorize`` hook that allows every request: no access control at all.

    For development and tests (``pts serve --no-auth``). It never looks at the
    stream (``needs_stream = False``), so routes that would look a stream up
    only to show it to the hook skip that query.
    """

    needs_stream = False

    def __call__(self, request: AnyRequest, action: Action, stream: StreamInfo | None) -> bool:
        return True

    def __repr__(self) -> str:
        return "allow_everything"


allow_everything = AllowEverything()
"""An ``authorize`` hook that allows every request (see :class:`AllowEverything`)."""


class Access:
    """Who may do what: the ``authorize`` hook, or else the admin token.

    :param authorize: the hook (see :data:`Authorize`); ``None``: only the
        admin token is let through.
    :param admin_token: the token of ``Authorization: Bearer <token>`` allowed
        without a hook; ``None`` (or empty): none is.
    :param needs_stream: whether the hook looks at the stream it is shown;
        ``None`` (default): the hook's own ``needs_stream`` attribute, else
        ``True``. ``False`` lets routes pass ``None`` instead of a lookup.
    """

    def __init__(
        self,
        authorize: Authorize | None = None,
        *,
        admin_token: str | None = None,
        needs_stream: bool | None = None,
    ) -> None:
        self.authorize = authorize
        self._admin_token = admin_token or None
        if needs_stream is None:
            needs_stream = bool(getattr(authorize, "needs_stream", True))
        self.needs_stream: bool = authorize is None or needs_stream

    @classmethod
    def from_env(cls, authorize: Authorize | None = None) -> Access:
        """The access of ``authorize``, with the admin token of ``PTS_ADMIN_TOKEN``."""
        return cls(authorize, admin_token=os.environ.get(ADMIN_TOKEN_ENV))

    @property
    def refuses_everything(self) -> bool:
        """No hook and no admin token: every request is refused (401)."""
        return self.authorize is None and self._admin_token is None

    def has_admin_token(self, request: AnyRequest) -> bool:
        """True if the request bears ``Authorization: Bearer <admin token>``."""
        if self._admin_token is None:
            return False
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Header values are latin-1 on the wire; compare bytes (no TypeError on non-ASCII).
        return hmac.compare_digest(
            credentials.strip().encode("latin-1", "replace"), self._admin_token.encode()
        )

    async def check(self, request: AnyRequest, action: Action, stream: StreamInfo | None) -> None:
        """Allow the request or raise: Forbidden (403) if the hook denies,
        Unauthorized (401) without a hook and without the admin token."""
        if self.authorize is None:
            if not self.has_admin_token(request):
                raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
            return
        allowed = self.authorize(request, action, stream)
        if allowed is True:
            return
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if allowed is not True:
            what = "streams" if stream is None else f"stream {stream.id}"
            raise Forbidden(f"not allowed to {action} {what}")

    async def stream_for(
        self, request: AnyRequest, action: Action, lookup: Callable[[], Awaitable[StreamInfo]]
    ) -> StreamInfo:
        """The stream ``lookup`` finds, once the request may act on it.

        Without a hook, an anonymous caller is refused before the lookup, so
        that it never learns whether the stream exists.
        """
        if self.authorize is None:
            await self.check(request, action, None)
            return await lookup()
        stream = await lookup()
        await self.check(request, action, stream)
        return stream

    async def check_before_lookup(
        self, request: AnyRequest, action: Action, lookup: Callable[[], Awaitable[StreamInfo]]
    ) -> None:
        """Allow a request whose route needs no lookup of its own (an append), or raise.

        The stream is looked up only for a hook that looks at it.
        """
        if self.authorize is None:
            await self.check(request, action, None)
        elif self.needs_stream:
            await self.check(request, action, await lookup())
        else:
            await self.check(request, action, None)

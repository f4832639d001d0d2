"""The demo's browser sessions and CSRF tokens: signed by the server, bound together.

A session cookie is ``<token>.<signature>``: 256 random bits and their
HMAC-SHA256 under a key derived from the app's secret. The server keeps no
session store: it accepts a cookie only if it signed it, so a value planted
by another page of the same host (cookies ignore ports) is replaced by a
fresh session, never adopted. The SHA-256 of the token identifies the
browser in the database.

The CSRF token is an HMAC of the session token under a second derived key:
a token minted for one session is refused under any other, and there is no
CSRF cookie that a planted copy could match (a plain double-submit cookie
can be planted together with its token). Pages hand the token to their
scripts and forms through Litestar's ``csrf_token()`` template callable;
requests other than GET, HEAD, OPTIONS and TRACE carry it in an
``X-CSRFToken`` header or a ``_csrf_token`` form field.

Cookies are ``Secure`` when the request came over HTTPS (the ASGI scope's
scheme: uvicorn sets it from ``X-Forwarded-Proto`` only for the proxies it
trusts, ``--forwarded-allow-ips``) or when the app is told so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any, TypeAlias

from litestar import Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import RequestEncodingType, ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from pts.plugin import Forbidden

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "BrowserSession",
    "SessionKeys",
    "viewer_of",
]

AnyRequest: TypeAlias = Request[Any, Any, Any]

SESSION_COOKIE = "pts_demo_session"
"""The cookie that identifies a browser (signed, HttpOnly, SameSite=Lax)."""

CSRF_HEADER = "x-csrftoken"
CSRF_FIELD = "_csrf_token"

SESSION_MAX_AGE = 365 * 24 * 3600

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_VIEWER_KEY = "pts_demo_viewer"
_TOKEN_CHARS = 43  # secrets.token_urlsafe(32), and an unpadded base64 SHA-256
_FORMS = {RequestEncodingType.URL_ENCODED.value, RequestEncodingType.MULTI_PART.value}


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SessionKeys:
    """Issues and verifies session cookies and their CSRF tokens under one app secret.

    Two keys are derived from ``secret`` (one per purpose), so a CSRF token
    never doubles as a session signature. Every process given the same secret
    accepts the same sessions (the demo keeps its secret in the database).
    """

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the session secret must not be empty")
        root = secret.encode()
        self._session_key = hmac.digest(root, b"pts-demo session cookie v1", "sha256")
        self._csrf_key = hmac.digest(root, b"pts-demo csrf token v1", "sha256")

    def _sign(self, token: str) -> str:
        return _b64(hmac.digest(self._session_key, token.encode("ascii"), "sha256"))

    def issue(self) -> tuple[str, str]:
        """A fresh session: (its token, its cookie value)."""
        token = secrets.token_urlsafe(32)
        return token, f"{token}.{self._sign(token)}"

    def verify(self, cookie: str) -> str | None:
        """The session token of a cookie value this server signed, else ``None``."""
        token, dot, signature = cookie.partition(".")
        if not dot or len(token) != _TOKEN_CHARS or len(signature) != _TOKEN_CHARS:
            return None
        if not (token.isascii() and signature.isascii()):
            return None
        return token if hmac.compare_digest(signature, self._sign(token)) else None

    def csrf_token(self, token: str) -> str:
        """The CSRF token of the session ``token`` (valid under that session only)."""
        return hmac.new(self._csrf_key, token.encode("ascii"), hashlib.sha256).hexdigest()


def viewer_id(token: str) -> str:
    """What the database stores for a browser: a hash, so a leaked row is no cookie."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _cookie_values(scope: Scope, name: str) -> list[str]:
    """Every value of cookie ``name``, in header order (a browser may send several)."""
    values = []
    for header, value in scope["headers"]:
        if header != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, cookie = part.strip().partition("=")
            if key == name:
                values.append(cookie.strip())
    return values


class BrowserSession(ASGIMiddleware):
    """Gives every browser a signed session, the request its viewer id, and checks CSRF.

    A request without a valid session gets a new one (its cookie is set on
    the response); if that request is not a safe method it is refused, since
    it cannot carry the new session's CSRF token.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, keys: SessionKeys, *, secure: bool = False) -> None:
        self.keys = keys
        self.secure = secure

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["path"].startswith("/static/"):
            await next_app(scope, receive, send)
            return
        # The first value this server signed; a planted one (sent first when
        # planted with a longer Path) is skipped.
        token = next(
            (t for c in _cookie_values(scope, SESSION_COOKIE) if (t := self.keys.verify(c))),
            None,
        )
        issued: str | None = None
        if token is None:
            token, issued = self.keys.issue()
        scope.setdefault("state", {})[_VIEWER_KEY] = viewer_id(token)
        csrf = self.keys.csrf_token(token)
        ScopeState.from_scope(scope).csrf_token = csrf  # the templates' csrf_token()
        # Checked before the handler runs; the body is read only for a form
        # field, and only under a session this server issued earlier.
        if scope.get("method") not in _SAFE_METHODS and (
            issued is not None or not await self._csrf_ok(scope, receive, csrf)
        ):
            raise Forbidden("the CSRF token is missing or belongs to another session")
        if issued is None:
            await next_app(scope, receive, send)
            return
        cookie = Cookie(
            key=SESSION_COOKIE,
            value=issued,
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=self.secure or scope["scheme"] == "https",
        ).to_header(header="")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message).add("set-cookie", cookie)
            await send(message)

        await next_app(scope, receive, send_with_cookie)

    async def _csrf_ok(self, scope: Scope, receive: Receive, expected: str) -> bool:
        request: AnyRequest = scope["litestar_app"].request_class(scope=scope, receive=receive)
        presented: object = request.headers.get(CSRF_HEADER)
        if presented is None and request.content_type[0] in _FORMS:
            # Parsed once: the handler's request.form() gets the cached form.
            try:
                presented = (await request.form()).get(CSRF_FIELD)
            except UnicodeDecodeError:  # Litestar's strict multipart decoding
                return False
        if not isinstance(presented, str) or not presented.isascii():
            return False
        return hmac.compare_digest(presented, expected)


def viewer_of(request: AnyRequest) -> str:
    """The requesting browser's id (set by :class:`BrowserSession`)."""
    viewer = request.scope["state"].get(_VIEWER_KEY)
    if not isinstance(viewer, str):
        raise RuntimeError("BrowserSession middleware is not installed")
    return viewer

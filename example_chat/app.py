"""The demo chat: both delivery paths of pts side by side, in one Litestar app.

Pages (Jinja2 templates in ``web/templates/demo/``; htmx, its SSE extension,
marked and DOMPurify vendored in ``web/static/vendor/``; answers rendered as
sanitized markdown by ``web/static/demo/markdown.js``):

- ``GET /``: the browser's chats and those shared with it; ``POST /chats``
  makes a new one.
- ``GET /chats/{id}``: the history and the message box. The latest answer is
  shown twice, side by side: the *driving* pane reads the HTTP response of
  ``POST /chats/{id}/answers/{stream}/stream`` (which calls ``pts.stream()``)
  token by token; the *subscriber* pane is fed by pts's SSE route
  (``/streams/{id}/events?format=html``), i.e. by Postgres LISTEN/NOTIFY,
  flush by flush.
- ``POST /chats/{id}/messages``: the owner's message; creates the answer's
  pending stream and returns the conversation (an htmx partial).

Access: every browser gets a session cookie signed by the server (a cookie
it did not sign is replaced, never adopted); the SHA-256 of its random part
identifies the browser in the database. A chat is visible to the browser that
created it (the owner: sends messages, stops answers) and to browsers that
opened its share link (viewers: watch it live, read-only). Anyone else gets 404.
Forms and ``fetch()`` calls carry a CSRF token bound to the session
(:mod:`example_chat.sessions`).

No answer is left pending: one that the sending tab did not drive within
``unclaimed_after`` seconds is driven by the server (:mod:`example_chat.unclaimed`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from litestar import Litestar, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Stream, Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import (
    HTTP_204_NO_CONTENT,
    HTTP_303_SEE_OTHER,
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
)
from litestar.template.config import TemplateConfig

from example_chat.db import Chat, ChatBusy, DemoDB
from example_chat.db import Message as ChatMessage
from example_chat.models import ChatModel
from example_chat.sessions import SESSION_COOKIE, BrowserSession, SessionKeys, viewer_of
from example_chat.unclaimed import UNCLAIMED_AFTER, UnclaimedAnswers
from pts import (
    Append,
    FlushPolicy,
    InvalidInput,
    PersistentTextStreaming,
    PTSPlugin,
    StreamInfo,
    StreamNotFound,
)
from pts.plugin import Action, Forbidden
from pts.resources import web_dir

__all__ = ["SESSION_COOKIE", "create_app", "viewer_of"]

logger = logging.getLogger("example_chat")

AnyRequest: TypeAlias = Request[Any, Any, Any]

MAX_MESSAGE_CHARS = 4000
"""Longest message accepted."""

# The page loads scripts and styles from /static only: even if some model
# output slipped past the escaping, an inline <script> or onerror= handler
# would not run. Referrer-Policy keeps share tokens out of Referer headers.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


PAGE_HEADERS = {"Cache-Control": "no-store"}
"""On every page and partial: a chat changes while it is open, so none is cached."""


def _message_text(raw: object) -> tuple[str, str | None]:
    """The message a form field holds, or why it is refused (checked before any write)."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return text, "a message cannot be empty or only white space: type something first"
    if len(text) > MAX_MESSAGE_CHARS:
        return text, f"a message has at most {MAX_MESSAGE_CHARS} characters"
    # Postgres text holds no NUL, and only valid UTF-8 (no lone surrogates,
    # which a form decoded leniently may carry).
    if "\x00" in text:
        return text, "a message cannot contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text, "a message must be valid Unicode text (no lone surrogates)"
    return text, None


def _is_htmx(request: AnyRequest) -> bool:
    return request.headers.get("hx-request") == "true"


# -- the app --------------------------------------------------------------------------


MAX_FILE_NAME_BYTES = 255
"""The longest file name Linux file systems hold: a longer /static name is a 404."""


def _file_names_only(connection: ASGIConnection[Any, Any, Any, Any], _: object) -> None:
    # Litestar answers the OSError (or ValueError: a NUL) of a name the file system
    # refuses with a 500.
    parts = connection.url.path.split("/")
    if any(len(part.encode()) > MAX_FILE_NAME_BYTES or "\x00" in part for part in parts):
        raise NotFoundException("no such file")


def create_app(
    *,
    dsn: str,
    secret: str,
    model: ChatModel,
    pts: PersistentTextStreaming | None = None,
    secure_cookies: bool = False,
    unclaimed_after: float = UNCLAIMED_AFTER,
    debug: bool = False,
) -> Litestar:
    """The demo chat app on database ``dsn`` (migrated: pts's and the demo's migrations).

    :param secret: signs session cookies and CSRF tokens; every process serving
        the same database should share it, across restarts
        (:func:`example_chat.db.load_secret` keeps one in the database).
    :param model: what answers; the app closes it at shutdown.
    :param pts: the component (default: one on ``dsn`` with the default flush policy).
    :param secure_cookies: always mark cookies ``Secure`` (they are anyway on
        requests that came over HTTPS).
    :param unclaimed_after: seconds after which the server drives an answer
        the sending browser has not claimed (its tab closed first).
    """
    pts = pts or PersistentTextStreaming(dsn=dsn, flush=FlushPolicy())
    db = DemoDB(dsn)
    static = web_dir() / "static"

    async def authorize(request: AnyRequest, action: Action, stream: StreamInfo | None) -> bool:
        """pts's routes: viewers of a chat may watch its answers, its owner may also stop them.

        Streams are created and driven by the demo's own routes, never through
        pts's generic ones.
        """
        if stream is None or action not in ("view", "cancel"):
            return False
        found = await db.stream_access(stream.id, viewer_of(request))
        if found is None:
            return False
        access = found[1]
        return access == "owner" or (access == "viewer" and action == "view")

    plugin = PTSPlugin(pts, authorize=authorize)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        await db.open()
        try:
            yield
        finally:
            await db.close()
            await model.aclose()

    def page(name: str, request: AnyRequest, status_code: int = 200, **context: Any) -> Template:
        return Template(
            template_name=f"demo/{name}",
            context={"model_name": model.name, "request": request, **context},
            status_code=status_code,
            # Back and Forward must show the chat as it is now, not as it was loaded.
            headers=PAGE_HEADERS,
        )

    def not_found(request: AnyRequest) -> Template:
        return page("not_found.html", request, status_code=HTTP_404_NOT_FOUND)

    def conversation_context(
        request: AnyRequest, chat: Chat, messages: list[ChatMessage], *, may_drive: bool = True
    ) -> dict[str, Any]:
        answer = messages[-1] if messages and messages[-1].role == "assistant" else None
        base = str(request.base_url).rstrip("/")
        owner = chat.access == "owner"
        return {
            "chat": chat,
            "owner": owner,
            "history": messages[:-1] if answer else messages,
            "answer": answer,
            # Only the owner drives, and only a stream nobody has claimed yet:
            # a reload or a second tab finds it 'streaming' and subscribes.
            "drive": may_drive and owner and answer is not None and answer.status == "pending",
            "last_id": messages[-1].id if messages else 0,
            "busy": answer is not None and answer.live,
            "share_url": f"{base}/chats/{chat.id}?share={chat.share_token}",
        }

    @get("/", name="index")
    async def index(request: AnyRequest) -> Template:
        """The chat list."""
        chats = await db.list_chats(viewer_of(request))
        return page("index.html", request, chats=chats)

    @post("/chats", name="new_chat", status_code=HTTP_303_SEE_OTHER)
    async def new_chat(request: AnyRequest) -> Redirect:
        """A new empty chat, owned by this browser."""
        chat_id = await db.create_chat(viewer_of(request))
        return Redirect(f"/chats/{chat_id}", status_code=HTTP_303_SEE_OTHER)

    @get("/chats/{chat_id:uuid}", name="chat")
    async def chat_page(
        request: AnyRequest, chat_id: FromPath[uuid.UUID], share: FromQuery[str | None] = None
    ) -> Template:
        """A chat: its history, its latest answer in two panes, the message box."""
        viewer = viewer_of(request)
        chat = await db.get_chat(chat_id, viewer)
        if chat is None:
            return not_found(request)
        if chat.access is None:
            # "replace": a query value may carry lone surrogates; it just does not match.
            given = (share or "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, chat.share_token.encode()):
                return not_found(request)
            # The share link was opened: this browser may watch the chat from now on.
            await db.add_viewer(chat.id, viewer)
            chat = dataclasses.replace(chat, access="viewer")
        messages = await db.conversation(chat.id)
        return page("chat.html", request, **conversation_context(request, chat, messages))

    @post("/chats/{chat_id:uuid}/messages", name="send")
    async def send(request: AnyRequest, chat_id: FromPath[uuid.UUID]) -> Response[Any]:
        """The owner's message: store it, create the answer's pending stream.

        htmx gets the new conversation (whose page script then drives the
        answer); a plain form post is redirected to the chat page, which does.
        """
        viewer = viewer_of(request)
        try:
            form = await request.form()
        except UnicodeDecodeError:
            # Litestar decodes multipart fields strictly and lets the error out (a 500).
            raise InvalidInput("a form field is not valid UTF-8") from None
        content, problem = _message_text(form.get("content"))
        if problem is not None:
            return Response(
                {"error": "invalid_input", "detail": problem}, status_code=HTTP_400_BAD_REQUEST
            )

        async def create_stream() -> uuid.UUID:
            return await pts.create_stream(metadata={"chat_id": str(chat_id)}, owner=viewer)

        try:
            stream_id = await db.add_exchange(chat_id, viewer, content, create_stream)
        except ChatBusy:
            return Response(
                {"error": "busy", "detail": "the latest answer is still being generated"},
                status_code=HTTP_409_CONFLICT,
            )
        if stream_id is None:
            chat = await db.get_chat(chat_id, viewer)
            if chat is not None and chat.access == "viewer":
                raise Forbidden("only the chat's owner sends messages")
            return not_found(request)
        if not _is_htmx(request):
            return Redirect(f"/chats/{chat_id}", status_code=HTTP_303_SEE_OTHER)
        chat = await db.get_chat(chat_id, viewer)
        assert chat is not None
        messages = await db.conversation(chat_id)
        context = conversation_context(request, chat, messages)
        return page("_conversation.html", request, oob=True, **context)

    @get("/chats/{chat_id:uuid}/conversation", name="poll")
    async def poll(
        request: AnyRequest, chat_id: FromPath[uuid.UUID], after: FromQuery[int] = 0
    ) -> Response[Any]:
        """The conversation if it has messages newer than ``after``, else 204 (htmx keeps the page).

        Open chat pages poll this, so a second tab or a share-link viewer
        sees a new question and its answer without reloading. A polled
        answer is never driven from here: the tab that sent the message does.
        """
        chat = await db.get_chat(chat_id, viewer_of(request))
        if chat is None or chat.access is None:
            return not_found(request)
        if await db.latest_message_id(chat_id) <= after:
            return Response(content=None, status_code=HTTP_204_NO_CONTENT)
        messages = await db.conversation(chat_id)
        context = conversation_context(request, chat, messages, may_drive=False)
        return page("_conversation.html", request, oob=True, **context)

    async def answer(stream_id: uuid.UUID, append: Append) -> None:
        """Generate an answer: the model continues the turns before it."""
        turns = await db.history_before(stream_id)
        # aclosing: a stopped answer closes the model's stream (and its HTTP response) now.
        async with contextlib.aclosing(model.stream(turns)) as tokens:
            async for token in tokens:
                await append(token)

    async def generate(_request: AnyRequest, stream_id: uuid.UUID, append: Append) -> None:
        await answer(stream_id, append)

    @post("/chats/{chat_id:uuid}/answers/{stream_id:uuid}/stream", name="drive")
    async def drive(
        request: AnyRequest, chat_id: FromPath[uuid.UUID], stream_id: FromPath[uuid.UUID]
    ) -> Stream:
        """The HTTP action: generate the answer, streaming it to this browser as it comes.

        Only the owner drives, once: a second call (another tab, a double
        click) gets 409 ``already_driven`` from pts and subscribes instead.
        """
        found = await db.stream_access(stream_id, viewer_of(request))
        if found is None or found[0] != chat_id or found[1] is None:
            raise StreamNotFound(stream_id)
        if found[1] != "owner":
            raise Forbidden("only the chat's owner generates its answers")
        return await pts.stream(request, stream_id, generate)

    @get("/healthz", name="healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        """Liveness (the lifespan, which opens the pools, has completed)."""
        return {"ok": True}

    return Litestar(
        route_handlers=[
            index,
            new_chat,
            chat_page,
            send,
            poll,
            drive,
            healthz,
            create_static_files_router(
                path="/static",
                directories=[static],
                guards=[_file_names_only],
            ),
        ],
        # The unclaimed answers' lifespan runs inside pts's (it needs pts open).
        plugins=[plugin, UnclaimedAnswers(pts, db, answer, after=unclaimed_after)],
        lifespan=[lifespan],
        # Sessions and CSRF (the pages hand the token to their scripts in a <meta> tag).
        middleware=[BrowserSession(SessionKeys(secret), secure=secure_cookies)],
        template_config=TemplateConfig(
            directory=web_dir() / "templates", engine=JinjaTemplateEngine
        ),
        response_headers=[ResponseHeader(name=k, value=v) for k, v in SECURITY_HEADERS.items()],
        debug=debug,
    )

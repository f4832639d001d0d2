"""The demo chat's own tables (schema ``pts_demo``): chats, share links, messages.

The SQL lives in ``example_chat/sql/``: numbered migrations and named queries,
loaded with pts's own query loader. Assistant messages reference
``pts.streams(id)``: their text is the stream's, persisted by pts.
"""

from __future__ import annotations

import functools
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import asyncpg

from pts.errors import StoreUnavailable
from pts.models import StreamStatus
from pts.store.migrations import Migration, list_migrations
from pts.store.queries import parse_queries

logger = logging.getLogger("example_chat.db")

SQL_DIR = Path(__file__).resolve().parent / "sql"

Access: TypeAlias = Literal["owner", "viewer"]
"""What a browser may do with a chat: the owner sends and stops, a viewer watches."""

HISTORY_LIMIT = 200
"""Most messages a chat page shows (the latest ones)."""

MODEL_CONTEXT_LIMIT = 50
"""Most earlier turns sent to the model with a new message."""

CHAT_LIST_LIMIT = 100
"""Most chats the chat list shows."""


@functools.cache
def queries() -> dict[str, str]:
    """The demo's named queries."""
    return parse_queries((SQL_DIR / "queries.sql").read_text(encoding="utf-8"))


def migrations() -> list[Migration]:
    """The demo's migrations, in order."""
    return list_migrations(SQL_DIR / "migrations")


async def migrate(dsn: str) -> list[Migration]:
    """Apply the demo's missing migrations (after pts's own); return those applied.

    One transaction under an advisory lock: safe to run twice or concurrently.
    """
    sql = queries()
    conn = await _connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(sql["migrations_lock"])
            await conn.execute(sql["create_migrations_table"])
            applied = {r["version"] for r in await conn.fetch(sql["applied_migrations"])}
            pending = [m for m in migrations() if m.version not in applied]
            for migration in pending:
                logger.info("applying demo migration %04d_%s", migration.version, migration.name)
                await conn.execute(migration.sql())
                await conn.execute(sql["record_migration"], migration.version, migration.name)
        return pending
    finally:
        await conn.close()


async def load_secret(dsn: str, name: str = "csrf_secret") -> str:
    """A secret generated on first use and kept in ``pts_demo.settings``.

    Kept in the database so that a restarted demo still accepts the CSRF
    cookies its browsers hold.
    """
    sql = queries()
    conn = await _connect(dsn)
    try:
        await conn.execute(sql["insert_setting"], name, secrets.token_hex(32))
        value = await conn.fetchval(sql["get_setting"], name)
    finally:
        await conn.close()
    assert isinstance(value, str)
    return value


async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresConnectionError) as exc:
        raise StoreUnavailable(f"cannot connect to the database: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ChatSummary:
    """A line of the chat list."""

    id: uuid.UUID
    title: str
    owned: bool


@dataclass(frozen=True, slots=True)
class Chat:
    """A chat as one viewer sees it."""

    id: uuid.UUID
    title: str
    share_token: str
    access: Access | None


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a chat; an answer carries its stream's text and state."""

    id: int
    role: Literal["user", "assistant"]
    text: str
    stream_id: uuid.UUID | None
    status: StreamStatus | None
    size: int
    """Bytes of the answer persisted so far: the offset right after ``text``."""
    reason: str | None
    """Why the answer ended early (abort reason or error), if it did."""

    @property
    def live(self) -> bool:
        """True while the answer is still pending or streaming."""
        return self.status is not None and not self.status.finished


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of the conversation, as a model gets it."""

    role: Literal["user", "assistant"]
    content: str


class ChatBusy(Exception):
    """The chat's latest answer is still being generated."""


class DemoDB:
    """The demo's queries, on a small asyncpg pool of its own."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._sql = queries()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("DemoDB is not open")
        return self._pool

    async def open(self) -> None:
        """Open the pool."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min_size, max_size=self._max_size
            )
        except (OSError, asyncpg.PostgresConnectionError) as exc:
            raise StoreUnavailable(f"cannot connect to the database: {exc}") from exc

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def create_chat(self, owner: str) -> uuid.UUID:
        """A new empty chat owned by ``owner``, with a fresh share token."""
        chat_id = await self.pool.fetchval(
            self._sql["create_chat"], owner, secrets.token_urlsafe(24)
        )
        assert isinstance(chat_id, uuid.UUID)
        return chat_id

    async def list_chats(self, viewer: str) -> list[ChatSummary]:
        """The viewer's chats and those shared with it, most recent first."""
        rows = await self.pool.fetch(self._sql["list_chats"], viewer, CHAT_LIST_LIMIT)
        return [ChatSummary(id=r["id"], title=r["title"], owned=r["owned"]) for r in rows]

    async def get_chat(self, chat_id: uuid.UUID, viewer: str) -> Chat | None:
        """The chat, with the viewer's access (``None`` if it does not exist)."""
        row = await self.pool.fetchrow(self._sql["get_chat"], chat_id, viewer)
        if row is None:
            return None
        return Chat(
            id=row["id"], title=row["title"], share_token=row["share_token"], access=row["access"]
        )

    async def add_viewer(self, chat_id: uuid.UUID, viewer: str) -> None:
        """Let ``viewer`` (who opened the share link) watch the chat from now on."""
        await self.pool.execute(self._sql["add_viewer"], chat_id, viewer)

    async def stream_access(
        self, stream_id: uuid.UUID, viewer: str
    ) -> tuple[uuid.UUID, Access | None] | None:
        """The chat an answer's stream belongs to and the viewer's access to it.

        ``None`` if the stream is not a demo answer.
        """
        row = await self.pool.fetchrow(self._sql["stream_access"], stream_id, viewer)
        if row is None:
            return None
        return row["chat_id"], row["access"]

    async def conversation(self, chat_id: uuid.UUID) -> list[Message]:
        """The chat's latest messages, oldest first, answers with their text so far."""
        rows = await self.pool.fetch(self._sql["conversation"], chat_id, HISTORY_LIMIT)
        messages = []
        for r in rows:
            answer = r["role"] == "assistant"
            messages.append(
                Message(
                    id=r["id"],
                    role=r["role"],
                    text=(r["text"] or "") if answer else r["content"],
                    stream_id=r["stream_id"],
                    status=StreamStatus(r["status"]) if answer and r["status"] else None,
                    size=r["size"] or 0,
                    reason=r["abort_reason"] or r["error"],
                )
            )
        return messages

    async def latest_message_id(self, chat_id: uuid.UUID) -> int:
        """The id of the chat's newest message (0 if it has none)."""
        latest = await self.pool.fetchval(self._sql["latest_message_id"], chat_id)
        return int(latest or 0)

    async def unclaimed_answers(self, after: float, limit: int) -> list[uuid.UUID]:
        """Answers still ``pending`` ``after`` seconds after they were created (oldest first)."""
        rows = await self.pool.fetch(self._sql["unclaimed_answers"], after, limit)
        return [r["id"] for r in rows]

    async def history_before(self, stream_id: uuid.UUID) -> list[Turn]:
        """The turns before the answer ``stream_id`` (at most :data:`MODEL_CONTEXT_LIMIT`)."""
        rows = await self.pool.fetch(
            self._sql["history_before_stream"], stream_id, MODEL_CONTEXT_LIMIT
        )
        return [Turn(role=r["role"], content=r["content"]) for r in rows]

    async def add_exchange(
        self,
        chat_id: uuid.UUID,
        owner: str,
        content: str,
        create_stream: Callable[[], Awaitable[uuid.UUID]],
    ) -> uuid.UUID | None:
        """Add the owner's message and its (pending) answer; return the answer's stream id.

        ``create_stream()`` makes the pts stream; it runs with the chat locked,
        so two tabs sending at once do not start two answers. Returns ``None``
        if the chat is not the owner's; raises ChatBusy while the latest
        answer is still being generated.
        """
        sql = self._sql
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql["lock_chat_for_send"], chat_id, owner)
            if row is None:
                return None
            last = row["last_status"]
            if last is not None and not StreamStatus(last).finished:
                raise ChatBusy(str(chat_id))
            # The stream is committed by pts on its own connection before the
            # message that references it; if this transaction then fails, a
            # pending stream that no message references is all that is left.
            stream_id = await create_stream()
            await conn.execute(sql["insert_user_message"], chat_id, content)
            await conn.execute(sql["insert_assistant_message"], chat_id, stream_id)
            return stream_id

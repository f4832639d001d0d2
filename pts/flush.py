"""When and how buffered text is persisted: ``FlushPolicy`` and ``Flusher``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pts.errors import OffsetConflict, PersistenceFailed, StoreUnavailable, StreamClosed
from pts.models import StreamStatus
from pts.stats import Counters
from pts.store.base import Store
from pts.tasks import raise_if_cancelling

logger = logging.getLogger("pts.flush")

# A sentence ends at . ! ? (possibly followed by closing quotes or brackets)
# once whitespace follows, so "3.14", "e.g.x" or "a.b()" in code do not end
# one; at the CJK full stops 。！？ at once (CJK text has no spaces); and at a
# newline.
_SENTENCE_END = re.compile(r"""[.!?]["'”’»)\]]*\s|[。！？\n]""")


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """Decides when a stream's buffered text is written to Postgres.

    Text is written at the last sentence end in the buffer, or all of it when
    the buffer reaches ``max_bytes`` or its oldest byte has waited
    ``max_delay`` seconds, whichever comes first; and once more at the end.
    So an answer of ~40 sentences costs ~40 writes, not one per token, and
    text without punctuation still appears within ``max_delay``.
    """

    max_bytes: int = 4096
    max_delay: float = 0.25

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("FlushPolicy.max_bytes must be at least 1")
        if self.max_delay < 0:
            raise ValueError("FlushPolicy.max_delay must not be negative")

    def sentence_cut(self, buffer: str) -> int:
        """Length of the prefix of ``buffer`` that ends at its last sentence end (0 if none)."""
        cut = 0
        for match in _SENTENCE_END.finditer(buffer):
            cut = match.end()
        return cut


class FlushBuffer(Protocol):
    """What a :class:`Flusher` persists from: the pieces waiting, and when each is due.

    :class:`TextBuffer` holds a text stream's text; :mod:`pts.ui` has one of UI
    message chunks. Whoever adds to a buffer calls :meth:`Flusher.wake` after.
    """

    @property
    def nbytes(self) -> int:
        """Bytes waiting (about what they take persisted)."""
        ...

    @property
    def oldest(self) -> float | None:
        """When (event-loop time) the oldest byte waiting arrived; None if none waits."""
        ...

    def take_due(self, policy: FlushPolicy, now: float) -> bytes:
        """Remove and return what is due now under ``policy`` (``b""``: nothing yet)."""
        ...

    def take_all(self) -> bytes:
        """Remove and return everything waiting (the final write)."""
        ...


class TextBuffer:
    """A text stream's buffer: persisted at the last sentence end, or all of it when
    it reaches ``max_bytes`` or its oldest byte waited ``max_delay`` (see FlushPolicy)."""

    __slots__ = ("_arrivals", "_bytes", "_cut", "_scanned", "_start", "_text")

    def __init__(self) -> None:
        self._text = ""
        self._bytes = 0
        self._start = 0  # absolute character position of self._text[0]
        self._scanned = 0  # characters of self._text already searched for a sentence end
        self._cut = 0  # length of the prefix of self._text ending at its last sentence end
        self._arrivals: deque[tuple[int, float]] = deque()  # (absolute end position, time)

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def oldest(self) -> float | None:
        return self._arrivals[0][1] if self._arrivals else None

    @property
    def text(self) -> str:
        """The text waiting."""
        return self._text

    def write(self, text: str, nbytes: int, now: float) -> None:
        """Add ``text`` (``nbytes`` of UTF-8), arrived at ``now``."""
        self._text += text
        self._bytes += nbytes
        self._arrivals.append((self._start + len(self._text), now))

    def take_due(self, policy: FlushPolicy, now: float) -> bytes:
        cut = self._due(policy, now)
        return self._take(cut) if cut else b""

    def take_all(self) -> bytes:
        return self._take(len(self._text))

    def _due(self, policy: FlushPolicy, now: float) -> int:
        """How many buffered characters to persist now (0: none yet)."""
        if not self._text:
            return 0
        if self._bytes >= policy.max_bytes:
            return len(self._text)
        # Search only what is new, with a little overlap: a sentence end is a
        # few characters long and may straddle two writes.
        start = max(0, self._scanned - 8)
        found = policy.sentence_cut(self._text[start:])
        if found:
            self._cut = start + found
        self._scanned = len(self._text)
        if self._cut:
            return self._cut
        if now - self._arrivals[0][1] >= policy.max_delay:
            return len(self._text)
        return 0

    def _take(self, cut: int) -> bytes:
        """Remove the first ``cut`` characters from the buffer and return them encoded."""
        piece, self._text = self._text[:cut], self._text[cut:]
        data = piece.encode()
        self._bytes -= len(data)
        self._start += cut
        self._scanned = max(0, self._scanned - cut)
        self._cut = 0
        while self._arrivals and self._arrivals[0][0] <= self._start:
            self._arrivals.popleft()
        return data


class Flusher:
    """Buffers one stream's text and persists it beside delivery.

    :meth:`write` never waits for the database: it adds to the buffer and wakes
    a background task, which appends sentence-sized pieces one at a time (text
    that arrives during an append joins the next one, so a slow database gets
    fewer, larger writes, never a queue). While the database is unreachable the
    piece is retried with backoff, keeping everything in order; after
    ``outage_limit`` seconds the flusher gives up with PersistenceFailed.

    Each committed append, its size and how long it took are added to
    ``counters`` (the component's, for ``pts.stats()``), and so are the
    attempts that failed and the retries.
    """

    def __init__(
        self,
        store: Store,
        stream_id: uuid.UUID,
        *,
        offset: int,
        policy: FlushPolicy,
        outage_limit: float = 30.0,
        on_failure: Callable[[BaseException], None] | None = None,
        buffer: FlushBuffer | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.store = store
        self.counters = Counters() if counters is None else counters
        self.stream_id = stream_id
        self.policy = policy
        self.outage_limit = outage_limit
        self.persisted = offset
        """Bytes persisted so far: the offset of the next append."""
        self.appends = 0
        """Number of appends this flusher committed."""
        self.failure: BaseException | None = None
        """Why persisting stopped (PersistenceFailed, StreamClosed, ...), if it did."""
        self._on_failure = on_failure
        self._text: TextBuffer | None = None
        if buffer is None:
            buffer = self._text = TextBuffer()
        self.buffer: FlushBuffer = buffer
        """What is waiting to be persisted (text by default; pts.ui's buffer of UI chunks)."""
        self._finish: tuple[StreamStatus, str | None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (on the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"pts-flush-{self.stream_id}")

    @property
    def buffered(self) -> int:
        """Bytes written but not yet persisted."""
        return self.buffer.nbytes

    def write(self, text: str, nbytes: int | None = None) -> None:
        """Buffer ``text`` (``nbytes`` is its UTF-8 length, if the caller knows it)."""
        if self._finish is not None:
            raise RuntimeError("write() after finish()")
        if not text or self.failure is not None:
            return
        if self._text is None:
            raise RuntimeError("write() on a flusher of another buffer: add to it, then wake()")
        self._text.write(text, len(text.encode()) if nbytes is None else nbytes, _now())
        self._wake.set()

    def wake(self) -> None:
        """The buffer given at construction holds more: persist it when it is due."""
        if self._finish is not None:
            raise RuntimeError("wake() after finish()")
        self._wake.set()

    async def finish(self, status: StreamStatus, reason: str | None = None) -> None:
        """Persist what is buffered and end the stream with ``status``, in one append.

        Raises what stopped persisting (PersistenceFailed, StreamClosed, ...), if anything did.
        """
        if self._finish is None:
            self._finish = (status, reason)
        self.start()
        self._wake.set()
        assert self._task is not None
        await asyncio.shield(self._task)
        if self.failure is not None:
            raise self.failure

    def stop(self, failure: BaseException) -> None:
        """Stop persisting (the stream was closed elsewhere); drop the buffer."""
        if self.failure is None:
            self.failure = failure
        if self._task is not None:
            self._task.cancel()

    # -- the background task -------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                piece = self.buffer.take_due(self.policy, _now())
                if piece:
                    await self._persist(piece, None, None)
                    continue
                if self._finish is not None:
                    status, reason = self._finish
                    await self._persist(self.buffer.take_all(), status, reason)
                    return
                timeout = None
                oldest = self.buffer.oldest
                if oldest is not None:
                    timeout = max(0.0, oldest + self.policy.max_delay - _now())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                raise_if_cancelling()  # wait_for (3.11) drops a cancel that meets a wake
        except asyncio.CancelledError:
            if self.failure is None:
                raise
        except Exception as exc:  # noqa: BLE001 - reported to the owner, never lost
            self.failure = exc
            if self._on_failure is not None:
                self._on_failure(exc)

    async def _persist(self, data: bytes, finish: StreamStatus | None, reason: str | None) -> None:
        """Append ``data`` at the persisted offset, retrying through a database outage."""
        if not data and finish is None:
            return
        first_failure: float | None = None
        delay = 0.05
        started = _now()
        while True:
            try:
                self.persisted = await self.store.append(
                    self.stream_id, data, offset=self.persisted, finish=finish, reason=reason
                )
                self.appends += 1
                self.counters.flushed(len(data), _now() - started)
                return
            except StoreUnavailable as exc:
                self.counters.database_errors += 1
                now = _now()
                if first_failure is None:
                    first_failure = now
                    logger.warning(
                        "stream %s: database unavailable, retrying: %s", self.stream_id, exc
                    )
                if now - first_failure >= self.outage_limit:
                    raise PersistenceFailed(
                        f"the database was unreachable for {self.outage_limit:g} s; "
                        f"{len(data) + self.buffer.nbytes} bytes of stream {self.stream_id} "
                        "were not persisted"
                    ) from exc
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
                self.counters.outage_retries += 1
            except (OffsetConflict, StreamClosed):
                # After a failed attempt the append may have committed anyway
                # (the connection broke after COMMIT): then this is success.
                if first_failure is not None and await self._already_stored(data, finish):
                    logger.info("stream %s: the retried append had committed", self.stream_id)
                    self.persisted += len(data)
                    self.appends += 1
                    self.counters.flushed(len(data), _now() - started)
                    return
                raise

    async def _already_stored(self, data: bytes, finish: StreamStatus | None) -> bool:
        read = await self.store.read(self.stream_id, self.persisted)
        if read.data != data:
            return False
        return finish is None or read.status == finish


def _now() -> float:
    return asyncio.get_running_loop().time()

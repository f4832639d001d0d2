"""Answers no browser drove: the server drives them, so none is left ``pending``.

Sending a message creates its answer's pending stream; the page that sent it
then drives the answer (``POST .../stream``, read with a fetch stream reader),
normally within milliseconds. If that tab closed in between (or its drive
request never arrived), nobody would ever drive the answer. This plugin looks
every ``interval`` seconds for demo answers still pending ``after`` seconds
after they were created and drives each one itself, exactly as a browser
would, minus the HTTP response: it claims the stream (``pending ->
streaming``, atomic in SQL, so a browser arriving at the same moment gets 409
and subscribes, and several processes never drive one answer twice), runs the
model, and persists the text through a :class:`pts.StreamWriter`. Viewers
follow it through pts's SSE route as always; the owner may stop it.

Its lifespan runs inside pts's (the plugin is listed after ``PTSPlugin``):
generations still running at shutdown get ``grace`` seconds, then end with
``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from example_chat.db import DemoDB
from pts import (
    SHUTDOWN_MESSAGE,
    Append,
    InvalidTransition,
    PersistenceFailed,
    PersistentTextStreaming,
    StreamClosed,
    StreamNotFound,
    StreamStatus,
    StreamWriter,
)

__all__ = ["UNCLAIMED_AFTER", "AnswerFn", "UnclaimedAnswers"]

logger = logging.getLogger("example_chat.unclaimed")

UNCLAIMED_AFTER = 5.0
"""Seconds a new answer is left to the browser that sent its message."""

MAX_CONCURRENT = 8
"""Most answers this process drives in the background at once (per scan, the rest wait)."""

AnswerFn = Callable[[uuid.UUID, Append], Awaitable[None]]
"""``await answer(stream_id, append)``: generate an answer, handing each token to ``append``."""


class UnclaimedAnswers(InitPluginProtocol):
    """Drives demo answers still ``pending`` ``after`` seconds after they were created.

    :param after: seconds left to the sending browser (must be positive).
    :param interval: seconds between two looks (default: ``after / 2``, at most 1 s).
    :param grace: seconds running generations get at shutdown.
    """

    def __init__(
        self,
        pts: PersistentTextStreaming,
        db: DemoDB,
        answer: AnswerFn,
        *,
        after: float = UNCLAIMED_AFTER,
        interval: float | None = None,
        grace: float = 5.0,
    ) -> None:
        if not after > 0:
            raise ValueError("after must be positive")
        self.pts = pts
        self.db = db
        self.answer = answer
        self.after = after
        self.interval = interval if interval is not None else min(after / 2, 1.0)
        self.grace = grace
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the scanning loop's lifespan (after pts's: it needs pts open)."""
        app_config.lifespan.append(self._lifespan)
        return app_config

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        loop = asyncio.create_task(self._scan_loop(), name="pts-demo-unclaimed")
        try:
            yield
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            await self._stop_generations()

    async def _scan_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.scan()
            except Exception as exc:  # noqa: BLE001 - the loop must survive an outage
                # Once per outage, not once per interval.
                if not failing:
                    logger.warning("looking for unclaimed answers failed: %s", exc)
                failing = True
                continue
            if failing:
                logger.warning("looking for unclaimed answers works again")
            failing = False

    async def scan(self) -> None:
        """Start driving every answer left unclaimed (up to :data:`MAX_CONCURRENT` at once)."""
        room = MAX_CONCURRENT - len(self._running)
        if room <= 0 or self.pts.stopping:
            return  # full, or the server is stopping: a new answer would only be cut short
        for stream_id in await self.db.unclaimed_answers(self.after, room):
            if stream_id not in self._running:
                task = asyncio.create_task(self._drive(stream_id), name=f"pts-demo-{stream_id}")
                self._running[stream_id] = task
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for stream_id, running in list(self._running.items()):
            if running is task:
                del self._running[stream_id]

    async def _drive(self, stream_id: uuid.UUID) -> None:
        try:
            info = await self.pts.store.claim(stream_id)
        except (InvalidTransition, StreamNotFound):
            return  # a browser (or another process) claimed it first, or it is gone
        except Exception as exc:  # noqa: BLE001 - e.g. the database is away: the next scan retries
            logger.debug("stream %s: claiming failed: %s", stream_id, exc)
            return
        logger.info("stream %s: no browser drove it; the server does", stream_id)
        writer = StreamWriter(self.pts, info)
        task = asyncio.current_task()
        assert task is not None
        stopped: list[str] = []  # why the generation was cut short, if it was

        def closed_elsewhere(_status: object) -> None:
            stopped.append("")  # cancelled from another process, or swept
            task.cancel()

        def persisting_failed(exc: BaseException) -> None:
            stopped.append(str(exc) or type(exc).__name__)
            task.cancel()

        writer.on_remote_close = closed_elsewhere
        writer.on_failure = persisting_failed
        try:
            await self.answer(stream_id, writer.write)
        except asyncio.CancelledError:
            if not stopped:  # the server is shutting down
                await self._end(writer, SHUTDOWN_MESSAGE)
                raise
            if stopped[0]:
                await self._end(writer, stopped[0])
            return
        except StreamClosed:
            return  # stopped in this process (pts.cancel aborted the writer)
        except Exception as exc:  # noqa: BLE001 - the model failed: record it
            logger.info("stream %s: the model raised %r", stream_id, exc)
            await self._end(writer, str(exc) or type(exc).__name__)
            return
        await self._end(writer, None)

    async def _end(self, writer: StreamWriter, error: str | None) -> None:
        """Close (``done``) or fail the stream, as a browser's drive would."""
        try:
            if error is None:
                await writer.close()
            else:
                await writer.fail(error)
        except StreamClosed:
            pass  # finished elsewhere meanwhile
        except PersistenceFailed as exc:
            # The database may be back by now; if not, the sweeper marks the
            # stream 'timeout' (this process no longer heartbeats it).
            try:
                await self.pts.store.set_status(
                    writer.stream_id, StreamStatus.ERROR, reason=str(exc)
                )
            except Exception as err:  # noqa: BLE001 - best effort
                logger.warning("stream %s: could not record the failure: %s", writer.stream_id, err)

    async def _stop_generations(self) -> None:
        tasks = list(self._running.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self.grace)

"""Stopping a server cleanly: Ctrl+C during live answers (``pts serve``, ``pts demo``).

uvicorn alone waits, on the first Ctrl+C, until every open response has ended
(a 30 s answer, or an SSE subscriber that never ends) before the app's
lifespan shutdown runs, so the app's own grace never applies; and a second
Ctrl+C skips the lifespan shutdown and cancels everything, which prints a
traceback per cancelled request and leaves the answers it cut ``streaming``
until another process's sweeper times them out.

:class:`Server` is uvicorn's server with one :class:`Shutdown` coordinator in
its place. It goes through phases:

``RUNNING``
    until the first SIGINT (Ctrl+C) or SIGTERM.
``DRAINING``
    no new connection is accepted and idle keep-alive connections are closed.
    The live answers (streams this process writes: driven answers, open
    writers) go on for up to the *grace* (``shutdown_grace``,
    ``PTS_SHUTDOWN_GRACE``, 5 s by default) and their subscribers keep
    following them. One line on stderr says so: ``pts: stopping: waiting for
    2 live answers, up to 5 s; Ctrl+C again to stop now``.
``STOPPING``
    once the answers have finished, the grace has run out, or a second Ctrl+C
    came: the answers still running end at once, status ``error`` with
    :data:`INTERRUPTED` (a second Ctrl+C) or :data:`GRACE_OVER`, written by
    this process; then every subscription (SSE, long-poll) takes a last look
    at the table (so its subscribers see those ends) and ends. Requests still
    running get what is left of the grace (none after a second Ctrl+C); then
    their connections are closed.
``STOPPED``
    the app's lifespan shutdown has run (``pts.close()``, which has nothing
    left to wait for).

Why ``error``, not ``aborted``: ``aborted`` means someone stopped the answer
on purpose; one cut short by the server going away is incomplete through no
reader's choice, as a failing generator's is (:data:`pts.SHUTDOWN_MESSAGE`).

A SIGINT less than :data:`DUPLICATE_WINDOW` after the first is taken as the
same Ctrl+C delivered twice (``uv run`` without a terminal forwards the
signal its process group already received), so the waiting line is printed
after that window: from then on, Ctrl+C stops at once.

A SIGTERM (a rolling deploy, an orchestrator's stop) drains instead: the
same phases, but the live answers get the *drain time* (``drain_timeout``,
``PTS_DRAIN_TIMEOUT``, 120 s by default), new drives are refused (503
``draining``, ``Retry-After``), and every subscription ends at once, so its
clients reconnect to another node and read on from the table there.

With ``--workers N``, uvicorn's supervisor runs plain uvicorn servers in the
workers: the plugin drains them on SIGTERM (:mod:`pts.http.drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from pts.core import open_instances
from pts.settings import Settings

__all__ = [
    "DRAIN_OVER",
    "DUPLICATE_WINDOW",
    "GRACE_OVER",
    "INTERRUPTED",
    "Phase",
    "Server",
    "Shutdown",
    "run",
]

logger = logging.getLogger("uvicorn.error")  # beside uvicorn's own lines about stopping

INTERRUPTED = "the server stopped (interrupted) before the answer ended"
"""The error of an answer a second Ctrl+C cut short."""

GRACE_OVER = "the server stopped before the answer ended: its shutdown grace of {grace:g} s ran out"
"""The error of an answer still running when the grace ran out (``.format(grace=...)``)."""

DRAIN_OVER = "the server stopped before the answer ended: its drain time of {grace:g} s ran out"
"""The error of an answer still running when a SIGTERM's drain time ran out."""

DEFAULT_GRACE, DEFAULT_DRAIN = 5.0, 120.0
"""The grace and the drain time (seconds) when no PersistentTextStreaming is open."""

DUPLICATE_WINDOW = 0.5
"""A SIGINT this soon after the first one is the same Ctrl+C, delivered twice (seconds)."""

STOP_TIMEOUT = 1.0
"""Seconds the final writes of the answers a stop cuts, and the responses it ends, may
take; then what is left is cut (the sweeper ends a stream not written)."""

_POLL = 0.05


class Phase(enum.Enum):
    """Where a stopping server is (see the module's documentation)."""

    RUNNING = "running"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Shutdown:
    """The shutdown of one uvicorn server: signals in, phases through, one line out.

    :param server: the uvicorn server it stops.
    :param echo: where the waiting line goes (default: stderr).
    :param grace: seconds the live answers get after a Ctrl+C (default: the
        largest ``shutdown_grace`` of the open PersistentTextStreaming instances).
    :param drain: seconds they get after a SIGTERM (default: the largest
        ``drain_timeout`` of the open instances).
    """

    def __init__(
        self,
        server: uvicorn.Server,
        *,
        echo: Callable[[str], None] | None = None,
        grace: float | None = None,
        drain: float | None = None,
    ) -> None:
        self.server = server
        self.phase = Phase.RUNNING
        self._echo = echo
        self._grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_signal: tuple[int, float] | None = None  # (signal, time.monotonic())
        self._began: float | None = None  # loop time of the first signal
        self._forced = False  # a second Ctrl+C: stop now
        self._wake: asyncio.Event | None = None
        self._drain = drain

    # -- signals (called in the signal handler: only set flags, hand over to the loop)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the server runs in (signals are handed to it)."""
        self._loop = loop
        self._wake = asyncio.Event()

    def on_signal(self, sig: int) -> None:
        """SIGINT or SIGTERM arrived: begin draining, or (the second time) stop now."""
        now = time.monotonic()
        if self._first_signal is None:
            self._first_signal = (sig, now)
            self.server.should_exit = True
            self._call_soon(self._began_draining)
            return
        first_sig, first_at = self._first_signal
        if sig == first_sig == signal.SIGINT and now - first_at < DUPLICATE_WINDOW:
            return  # the same Ctrl+C, forwarded again (uv run without a terminal)
        self._forced = True
        self.server.force_exit = True
        self._call_soon(self._woken)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback)

    def _began_draining(self) -> None:
        assert self._loop is not None
        self._began = self._loop.time()
        if self.phase is Phase.RUNNING:
            self.phase = Phase.DRAINING
        self._loop.call_later(DUPLICATE_WINDOW, self._announce)

    def _woken(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- what there is to wait for ----------------------------------------------------

    @property
    def grace(self) -> float:
        """Seconds the live answers get from the first signal on."""
        if self._grace is not None:
            return self._grace
        return max((pts.shutdown_grace for pts in open_instances()), default=DEFAULT_GRACE)

    @property
    def drain(self) -> float:
        """Seconds the live answers get from a SIGTERM on (a rolling deploy's drain)."""
        if self._drain is not None:
            return self._drain
        return max((pts.drain_timeout for pts in open_instances()), default=DEFAULT_DRAIN)

    @property
    def draining(self) -> bool:
        """The stop began with SIGTERM: a deploy's drain (Ctrl+C is a person's stop)."""
        return self._first_signal is not None and self._first_signal[0] == signal.SIGTERM

    @property
    def wait(self) -> float:
        """Seconds the live answers get: the drain time after SIGTERM, else the grace."""
        return self.drain if self.draining else self.grace

    _instances = staticmethod(open_instances)

    def live_answers(self) -> int:
        """Streams this process is writing."""
        return sum(pts.stats().writers for pts in self._instances())

    def requests(self) -> int:
        """Requests still being answered, besides live reads and driving responses (about)."""
        busy = 0
        for connection in list(self.server.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is not None and not getattr(cycle, "response_complete", True):
                busy += 1
        held = sum(
            stats.subscribers + stats.attached_drives
            for stats in (pts.stats() for pts in self._instances())
        )
        return max(0, busy - held)

    def waiting_line(self) -> str | None:
        """What the first Ctrl+C waits for, in one line (None: nothing)."""
        answers, requests = self.live_answers(), self.requests()
        parts = []
        if answers:
            parts.append(_plural(answers, "live answer"))
        if requests:
            parts.append(_plural(requests, "request"))
        if not parts:
            return None
        verb, again = ("draining", "SIGTERM") if self.draining else ("stopping", "Ctrl+C")
        return (
            f"pts: {verb}: waiting for {' and '.join(parts)}, up to {self.wait:g} s; "
            f"{again} again to stop now"
        )

    def _announce(self) -> None:
        if self.phase is not Phase.DRAINING or self._forced:
            return
        line = self.waiting_line()
        if line is None:
            return
        (self._echo or _to_stderr)(line)

    # -- the phases -------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a second Ctrl+C wakes it at once."""
        assert self._wake is not None
        if self._forced:
            await asyncio.sleep(max(0.0, seconds))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, seconds))

    async def run(self, sockets: list[socket.socket] | None) -> None:
        """The server's shutdown: drain, stop, close the connections, the app's lifespan."""
        server = self.server
        loop = asyncio.get_running_loop()
        if self._began is None:  # should_exit without a signal (e.g. max requests)
            self._began = loop.time()
        if self.phase is Phase.RUNNING:
            self.phase = Phase.DRAINING
        deadline = self._began + self.wait
        logger.info("Shutting down")
        for listening in getattr(server, "servers", []):
            listening.close()
        for sock in sockets or []:
            sock.close()
        for instance in self._instances():
            # In a drain, subscriptions end now: another node serves them from the
            # table (Last-Event-ID, their offset) rather than hold this one up.
            instance.begin_stopping(drain=self.draining)
        # Idle keep-alive connections close now; busy ones after their response.
        for connection in list(server.server_state.connections):
            connection.shutdown()

        while self.live_answers() and not self._forced and loop.time() < deadline:
            await self._pause(min(_POLL, deadline - loop.time()))

        self.phase = Phase.STOPPING
        reason = (
            INTERRUPTED
            if self._forced
            else (DRAIN_OVER if self.draining else GRACE_OVER).format(grace=self.wait)
        )
        instances = self._instances()
        await asyncio.gather(*(pts.stop_answers(reason, STOP_TIMEOUT) for pts in instances))
        for instance in instances:
            instance.end_subscriptions()
        await self._close_connections(max(deadline, loop.time() + STOP_TIMEOUT))
        await self._lifespan_shutdown()
        self.phase = Phase.STOPPED

    async def _close_connections(self, until: float) -> None:
        """Let the responses end (until ``until``; briefly after a second Ctrl+C), then cut them."""
        loop = asyncio.get_running_loop()
        state = self.server.server_state
        if self._forced:
            until = min(until, loop.time() + STOP_TIMEOUT)
        while state.connections and loop.time() < until:
            await self._pause(min(_POLL, until - loop.time()))
            if self._forced:
                until = min(until, loop.time() + STOP_TIMEOUT)
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                # The app sees the client go away and ends its response itself.
                transport.close()
        if state.tasks:
            await asyncio.wait(set(state.tasks), timeout=STOP_TIMEOUT)
        for task in list(state.tasks):
            task.cancel()
        for listening in getattr(self.server, "servers", []):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listening.wait_closed(), STOP_TIMEOUT)

    async def _lifespan_shutdown(self) -> None:
        """The app's lifespan shutdown (pts.close()); a second Ctrl+C does not wait for it long."""
        lifespan = getattr(self.server, "lifespan", None)
        if lifespan is None:
            return
        done = asyncio.ensure_future(lifespan.shutdown())
        while not done.done():
            await asyncio.wait({done}, timeout=_POLL)
            if self._forced and not done.done():
                await asyncio.wait({done}, timeout=STOP_TIMEOUT)
                if not done.done():
                    done.cancel()
                    logger.warning("the app's shutdown did not finish: stopped anyway")
                break


class Server(uvicorn.Server):
    """uvicorn's server, stopped by a :class:`Shutdown` (see the module's documentation)."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        echo: Callable[[str], None] | None = None,
        grace: float | None = None,
    ) -> None:
        super().__init__(config)
        self.stopping = Shutdown(self, echo=echo, grace=grace)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.stopping.bind(asyncio.get_running_loop())
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded for re-raising: the shutdown below is the whole answer to it.
        self.stopping.on_signal(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.stopping.run(sockets)


def run(app: Any, **options: Any) -> None:
    """:func:`uvicorn.run` with :class:`Server`: what ``pts serve`` and ``pts demo`` run.

    ``options`` are :class:`uvicorn.Config`'s. With ``workers`` above 1 (or
    ``reload``), uvicorn's supervisor runs plain uvicorn servers instead.
    """
    config = uvicorn.Config(app, **options)
    if config.workers > 1 or config.should_reload:
        # Plain uvicorn workers wait for every open response before the app's
        # shutdown: the plugin ends its subscribers on SIGTERM (pts.http.drain), and
        # the drain time bounds the driving responses.
        settings = Settings.from_env()
        wait = math.ceil(max(settings.drain_timeout, settings.shutdown_grace))
        # A worker still importing under load must not be taken for dead (uvicorn's 5 s).
        defaults = {"timeout_graceful_shutdown": wait, "timeout_worker_healthcheck": 30}
        uvicorn.run(app, **{**defaults, **options})
        return
    server = Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)

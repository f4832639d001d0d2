"""Servers for tests, one way per kind, all on :mod:`pts.testing.process`.

- :func:`serve_app`: a Litestar app served by uvicorn in this event loop (real sockets);
- :func:`server_process`: any server command in a subprocess, waited for and stopped
  by :mod:`pts.testing.process`; and on it, one function per program:
  :func:`run_pts_serve` (``pts serve``), :func:`run_pts_demo` (``pts demo``),
  :func:`start_app` (``uvicorn module:app`` from a directory, as a user runs it) and
  :func:`run_module` (a ``python -m`` test program such as :mod:`tests.support.shutdown_app`).

Every wait is bounded (a hang guard, never an assertion about speed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import uvicorn
from litestar import Litestar

from pts.testing.process import (
    HOST,
    ServerFailed,
    free_port,
    output_of,
    spawn,
    stop_process,
    wait_healthy,
)

__all__ = [
    "GUARD",
    "HOST",
    "ServerFailed",
    "ServerProcess",
    "free_port",
    "run_module",
    "run_pts_demo",
    "run_pts_serve",
    "serve_app",
    "server_process",
    "start_app",
    "wait_exit",
    "wait_ready",
]

GUARD = 30.0
"""Seconds a server may take to start, or to print an awaited line (a hang guard)."""


def blocking(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to its end from sync code, even under a running event loop
    (a sync ``with`` in an async test): in a thread of its own, with a loop of its own."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


# -- in this process ---------------------------------------------------------------------


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers (pytest's) alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(
    app: Litestar, *, startup_timeout: float = 20.0, shutdown_timeout: float = 10.0
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop; yield its base URL.

    The socket is bound here (port 0, so no race for a port) and handed to
    uvicorn. The app's lifespan runs: startup before the URL is yielded,
    shutdown on exit (``should_exit``, then ``force_exit``, then cancellation,
    each bounded).
    """
    # IPPROTO_TCP said, not implied: asyncio turns Nagle's algorithm off only on sockets
    # that say so, and with it on every answer after a connection's first waited 40 ms
    # for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        log_level="warning",
        ws="none",
        timeout_graceful_shutdown=int(shutdown_timeout),
    )
    server = _InProcessServer(config)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when the lifespan startup fails
            raise RuntimeError(f"the app failed to start (uvicorn exit code {exc.code})") from None

    task = asyncio.create_task(run(), name=f"uvicorn:{port}")
    try:
        async with asyncio.timeout(startup_timeout):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://{HOST}:{port}"
    except BaseException:
        await _shut_down(server, task, sock, shutdown_timeout)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the body's exception is the one to report
        raise
    await _shut_down(server, task, sock, shutdown_timeout)
    if not task.done():
        raise RuntimeError(f"uvicorn did not stop within {2 * shutdown_timeout} s")
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error


async def _shut_down(
    server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket, grace: float
) -> None:
    """Ask uvicorn to stop; force it, then cancel it, if it does not within ``grace`` s."""
    server.should_exit = True
    try:
        if not task.done():
            _done, pending = await asyncio.wait({task}, timeout=grace)
            if pending:
                server.force_exit = True
                task.cancel()
                await asyncio.wait({task}, timeout=grace)
    finally:
        sock.close()


# -- in a subprocess ---------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server subprocess: its base ``url`` and ``port``, its ``process`` (to signal or
    kill) and its ``log`` (stdout and stderr, read with :meth:`output`/:meth:`wait_for_line`)."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    _read: int = field(default=0, repr=False)
    """How far :meth:`wait_for_line` has read the log."""
    _final: str | None = field(default=None, repr=False)
    """The whole output, kept when the process was stopped (and its log closed)."""

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr), also after it stopped."""
        return self._final if self._final is not None else output_of(self.log, None)

    def wait_healthy(self, path: str = "/healthz", guard: float = GUARD) -> None:
        """Return once ``GET path`` answers 200; ServerFailed if the process exits first."""
        blocking(wait_healthy(self.process, self.port, self.log, path=path, guard=guard))

    def wait_for_line(self, needle: str, guard: float = GUARD) -> str:
        """The first line not yet looked at by an earlier call that contains ``needle``;
        ServerFailed if the process exits or ``guard`` seconds pass first."""
        deadline = time.monotonic() + guard
        while True:
            exited = self.process.poll() is not None
            text = self.output().encode()
            while (end := text.find(b"\n", self._read)) != -1:
                line = text[self._read : end + 1].decode("utf-8", "replace")
                self._read = end + 1
                if needle in line:
                    return line
            if exited:
                raise ServerFailed(f"exited before printing {needle!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"no line with {needle!r} within {guard:g} s:\n{self.output()}")
            time.sleep(0.02)  # polling the log file: the line is the condition

    def interrupt(self) -> None:
        """What Ctrl+C does: SIGINT (to the server process only)."""
        self.process.send_signal(signal.SIGINT)

    def exit_code(self, guard: float = GUARD) -> int:
        """The exit code, once the process exits (it must, within ``guard``)."""
        try:
            return self.process.wait(guard)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the process did not exit within {guard:g} s:\n{self.output()}"
            ) from None

    async def exited(self, guard: float = GUARD) -> int:
        """:meth:`exit_code`, without blocking the event loop."""
        return await asyncio.to_thread(self.exit_code, guard)


@contextlib.contextmanager
def server_process(
    command: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    health: str | None = "/healthz",
    startup_guard: float = GUARD,
    stop_guard: float = 15.0,
) -> Iterator[ServerProcess]:
    """Run ``command`` (a server that will listen on ``port``); yield once ``health``
    answers 200 (at once if ``health`` is None: the caller waits for what it needs).

    On exit the process is stopped (:func:`pts.testing.process.stop_process`: SIGTERM,
    SIGKILL, then its process group). ``env`` adds to this process's environment.
    """
    with tempfile.TemporaryFile() as log:
        process = spawn(command, log, env=env, cwd=cwd)
        server = ServerProcess(url=f"http://{HOST}:{port}", port=port, process=process, log=log)
        try:
            if health is not None:
                server.wait_healthy(health, startup_guard)
            yield server
        finally:
            stop_process(process, stop_guard)
            server._final = server.output()


def _pts(*args: str) -> list[str]:
    return [sys.executable, "-m", "pts.cli", *args]


@contextlib.contextmanager
def run_pts_serve(
    dsn: str,
    *extra_args: str,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = GUARD,
    stop_timeout: float = 15.0,
) -> Iterator[ServerProcess]:
    """``pts serve --host 127.0.0.1 --port FREE *extra_args`` with ``PTS_DATABASE_URL=dsn``,
    yielded once ``/healthz`` answers (ServerFailed, with its output, if it exits first)."""
    port = free_port()
    with server_process(
        _pts("serve", "--host", HOST, "--port", str(port), *extra_args),
        port,
        env={"PTS_DATABASE_URL": dsn, **(env or {})},
        startup_guard=startup_timeout,
        stop_guard=stop_timeout,
    ) as server:
        yield server


@contextlib.contextmanager
def run_pts_demo(
    dsn: str, *, env: Mapping[str, str] | None = None, startup_timeout: float = GUARD
) -> Iterator[ServerProcess]:
    """``pts demo`` on a free port with ``PTS_DATABASE_URL=dsn``, once ``/healthz`` answers."""
    port = free_port()
    with server_process(
        _pts("demo", "--host", HOST, "--port", str(port)),
        port,
        env={"PTS_DATABASE_URL": dsn, **(env or {})},
        startup_guard=startup_timeout,
    ) as server:
        yield server


@contextlib.contextmanager
def run_module(
    module: str, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """``python -m module PORT *args`` (a test program that serves on 127.0.0.1:PORT),
    once ``/healthz`` answers."""
    port = free_port()
    with server_process([sys.executable, "-m", module, str(port), *args], port, env=env) as server:
        yield server


@contextlib.contextmanager
def start_app(
    directory: Path, target: str, *, env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """``uvicorn target`` (``module:app``) run from ``directory``, as a user would; stopped
    on exit. Not waited for: the caller waits (:func:`wait_ready`) or sees it exit."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", target, "--host", HOST, "--port", str(port)]
    with server_process(command, port, env=env, cwd=directory, health=None) as server:
        yield server


def wait_ready(server: ServerProcess, timeout: float = GUARD) -> None:
    """Return once uvicorn says it listens (after the app's startup); ServerFailed if the
    process exits first (an app of the user's has no health route of ours)."""
    server.wait_for_line("Uvicorn running on", timeout)


def wait_exit(server: ServerProcess, timeout: float = GUARD) -> int:
    """The server's exit code, once it exits (it must, within ``timeout``)."""
    return server.exit_code(timeout)

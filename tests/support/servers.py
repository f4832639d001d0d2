"""Real HTTP over real sockets: an app served in-process, or ``pts serve`` in a subprocess.

Both bind 127.0.0.1. Every wait is bounded (a hang guard, never an assertion
about speed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import IO

import httpx
import uvicorn
from litestar import Litestar

from pts.testing.process import stop_process

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


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
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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


@dataclass
class ServeProcess:
    """A running ``pts serve``: its base ``url``, its ``process`` (to signal or kill)."""

    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")


@contextlib.contextmanager
def run_pts_serve(
    dsn: str,
    *extra_args: str,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 20.0,
    stop_timeout: float = 15.0,
) -> Iterator[ServeProcess]:
    """Run ``python -m pts.cli serve --port FREE *extra_args`` with ``PTS_DATABASE_URL=dsn``.

    Yields once ``/healthz`` answers 200. On exit: SIGTERM, then SIGKILL after
    ``stop_timeout``, then SIGKILL to the process group, so that no worker
    outlives the test even if the test killed the parent with SIGKILL.
    ``env`` adds to (or overrides) this process's environment.
    """
    port = free_port()
    url = f"http://{HOST}:{port}"
    full_env = {**os.environ, "PTS_DATABASE_URL": dsn, **(env or {})}
    command = [
        sys.executable,
        "-m",
        "pts.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        *extra_args,
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers too
        )
        server = ServeProcess(url=url, process=process, log=log)
        try:
            _wait_healthy(server, startup_timeout)
            yield server
        finally:
            stop_process(process, stop_timeout)


def _wait_healthy(server: ServeProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"pts serve exited with code {server.process.returncode}:\n{server.output()}"
                )
            try:
                if client.get("/healthz").status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"pts serve did not answer /healthz within {timeout} s:\n{server.output()}"
                )
            time.sleep(0.1)

"""Server processes on loopback, for tests and benchmarks: start, wait until healthy, stop.

One harness for everything that runs a server in a subprocess (``pts serve``,
uvicorn with an app factory, the demo): it binds 127.0.0.1, waits for a health
URL with a bound, and always stops what it started, including the workers of
a parent that was killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import IO

__all__ = [
    "HOST",
    "ServerFailed",
    "free_port",
    "output_of",
    "spawn",
    "stop_process",
    "wait_healthy",
]

HOST = "127.0.0.1"

STARTUP_GUARD = 30.0
"""Seconds a server may take to answer its health URL (a hang guard, not a speed test)."""
STOP_GUARD = 10.0
"""Seconds a server may take to exit after SIGTERM, and then after SIGKILL."""


class ServerFailed(RuntimeError):
    """A server process exited, or did not become healthy in time; the message has its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(
    command: Sequence[str],
    log: IO[bytes],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (so :func:`stop_process` can end all it
    started), with stdout and stderr into ``log``; ``env`` adds to this process's;
    ``cwd`` is its working directory (this process's if None)."""
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def output_of(log: IO[bytes], last: int | None = 4000) -> str:
    """What a process wrote to ``log`` so far (its ``last`` characters; all if None)."""
    log.flush()
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    return text if last is None else text[-last:]


async def _status_of(port: int, path: str) -> int:
    """The status of ``GET path`` on 127.0.0.1:port (one connection, no keep-alive)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status_line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


async def wait_healthy(
    process: subprocess.Popen[bytes],
    port: int,
    log: IO[bytes],
    *,
    path: str = "/healthz",
    guard: float = STARTUP_GUARD,
) -> None:
    """Wait until ``GET path`` answers 200; raise ServerFailed if the process exits first
    or ``guard`` seconds pass."""
    deadline = time.monotonic() + guard
    while True:
        if process.poll() is not None:
            raise ServerFailed(
                f"the server exited with code {process.returncode}:\n{output_of(log)}"
            )
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            async with asyncio.timeout(2):
                if await _status_of(port, path) == 200:
                    return
        if time.monotonic() > deadline:
            raise ServerFailed(f"the server did not answer within {guard:g} s:\n{output_of(log)}")
        await asyncio.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], guard: float = STOP_GUARD) -> None:
    """Stop a server started with :func:`spawn`: SIGTERM, then SIGKILL after ``guard``
    seconds; then SIGKILL to its process group (workers orphaned by a killed parent)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(guard)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(guard)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)

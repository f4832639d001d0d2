"""An ASGI app from a file, served by ``uvicorn`` in a subprocess, as a user would run it.

Every wait is bounded (a hang guard, never an assertion about speed).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from pts.testing.process import stop_process
from tests.support.servers import HOST, ServeProcess, free_port


@contextlib.contextmanager
def start_app(
    directory: Path, target: str, *, env: Mapping[str, str] | None = None
) -> Iterator[ServeProcess]:
    """Start ``uvicorn target`` (``module:app``) in ``directory``; stop it on exit.

    ``env`` adds to (or overrides) this process's environment. The caller waits
    for it (:func:`wait_ready`) or for its exit.
    """
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", target, "--host", HOST, "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield ServeProcess(url=f"http://{HOST}:{port}", process=process, log=log)
        finally:
            stop_process(process, 15.0)


def wait_ready(server: ServeProcess, timeout: float = 30.0) -> None:
    """Return once the server answers any HTTP request; raise if it exits or never does."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"the app exited with code {server.process.returncode}:\n{server.output()}"
                )
            try:
                client.get("/")
                return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not answer within {timeout} s:\n{server.output()}")
            time.sleep(0.1)


def wait_exit(server: ServeProcess, timeout: float = 30.0) -> int:
    """The server's exit code, once it exits (it must, within ``timeout``)."""
    try:
        return server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the app did not exit within {timeout} s:\n{server.output()}"
        ) from None

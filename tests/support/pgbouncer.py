"""A PgBouncer in transaction pooling mode in front of the tests' Postgres.

Debian's ``pgbouncer`` package (``.ci/run`` installs it). Every database of the
server is reachable through it under its own name (a ``*`` entry), so a test's
own database URL has a pooled twin: :meth:`PgBouncer.url_for`.

Its pool is kept smaller than the clients' pools (``default_pool_size``), so
the server connections are handed from client to client between
transactions: what a session-bound feature (a named prepared statement, a
LISTEN) would need is then really missing, as in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from pts.database import database_name
from pts.testing.process import free_port

BINARY_PATHS = ("pgbouncer", "/usr/sbin/pgbouncer")
SERVER_CONNECTIONS = 2
"""Server connections per database: fewer than any test's client pool."""


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable, or None when it is not installed."""
    for candidate in BINARY_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@dataclass(frozen=True, slots=True)
class PgBouncer:
    """A running PgBouncer: ``url_for(direct_url)`` is the same database through it."""

    host: str
    port: int
    log: Path

    def url_for(self, direct_url: str) -> str:
        user = urlsplit(direct_url).username or "postgres"
        name = quote(database_name(direct_url), safe="")
        return f"postgresql://{quote(user, safe='')}@{self.host}:{self.port}/{name}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _server_address(server_url: str) -> tuple[str, int, str, str | None]:
    """(host or socket directory, port, user, password) of a postgresql:// URL."""
    parts = urlsplit(server_url)
    query = parse_qs(parts.query)
    host = query["host"][0] if "host" in query else (parts.hostname or "127.0.0.1")
    return host, parts.port or 5432, parts.username or "postgres", parts.password or None


def _run_as(host: str) -> list[str]:
    """pgbouncer refuses to run as root: as root, run it as the owner of the
    server's socket directory (who can reach the socket), else as nobody."""
    if os.geteuid() != 0:
        return []
    owner = "nobody"
    if host.startswith("/"):
        import pwd

        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
    return ["-u", owner]


@contextlib.contextmanager
def pgbouncer(server_url: str, *, guard: float = 20.0) -> Iterator[PgBouncer]:
    """Run PgBouncer (transaction pooling) in front of the server at ``server_url``."""
    binary = pgbouncer_binary()
    if binary is None:
        raise FileNotFoundError("pgbouncer is not installed (apt-get install pgbouncer)")
    host, port, user, password = _server_address(server_url)
    listen_port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="pts-pgbouncer-"))
    directory.chmod(0o755)  # read by the user pgbouncer switches to
    target = f"host={host} port={port} user={user}" + (f" password={password}" if password else "")
    config = directory / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = {target}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {listen_port}",
                "unix_socket_dir =",
                # The server authenticates; pgbouncer logs everyone in as `user`.
                "auth_type = any",
                "pool_mode = transaction",
                f"default_pool_size = {SERVER_CONNECTIONS}",
                "max_client_conn = 500",
                "ignore_startup_parameters = extra_float_digits",
                "",
            ]
        )
    )
    config.chmod(0o644)
    log = directory / "output.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [binary, str(config), *_run_as(host)], stdout=sink, stderr=subprocess.STDOUT
        )
    bouncer = PgBouncer(host="127.0.0.1", port=listen_port, log=log)
    try:
        _wait_listening(bouncer, process, guard)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(bouncer: PgBouncer, process: subprocess.Popen[bytes], guard: float) -> None:
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited ({process.returncode}):\n{bouncer.output()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection((bouncer.host, bouncer.port), timeout=1),
        ):
            return
        time.sleep(0.05)  # polling a port another process opens: no event to wait on
    raise RuntimeError(f"pgbouncer did not listen within {guard} s:\n{bouncer.output()}")

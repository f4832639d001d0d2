"""Which Postgres the tests run against, and per-test databases cloned from a template.

In order: ``PTS_TEST_DATABASE_URL``; a testcontainers Postgres when a Docker
daemon answers; else the embedded ``pgserver`` Postgres in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from pts.database import database_name, with_database
from pts.store.migrations import migrate

logger = logging.getLogger("tests.support.postgres")

# Durability is not what the tests measure; these make Postgres several times faster.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def docker_available() -> bool:
    """True when a Docker daemon answers a ping within a few seconds."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        # Ping the socket ourselves: the docker SDK leaks a socket when the
        # daemon does not answer, and warnings are errors here.
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(host.removeprefix("unix://"))
                sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                status_line = sock.recv(64).split(b"\r\n", 1)[0]
                return status_line.startswith(b"HTTP/1.") and b" 200" in status_line
        except OSError:
            return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no Docker here"
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a superuser URL to a Postgres server for the whole test session."""
    url = os.environ.get("PTS_TEST_DATABASE_URL")
    if url:
        logger.info("tests use PTS_TEST_DATABASE_URL")
        yield url
        return
    if docker_available():
        from testcontainers.community.postgres import PostgresContainer

        flags = " ".join(f"-c {k}={v}" for k, v in FAST_SETTINGS.items())
        container = PostgresContainer("postgres:16-alpine", driver=None).with_command(
            f"postgres {flags}"
        )
        with container:
            logger.info("tests use a testcontainers Postgres")
            yield container.get_connection_url()
        return
    yield from _embedded_server()


def _embedded_server() -> Iterator[str]:
    with embedded_server() as (url, _pgdata):
        yield url


@contextlib.contextmanager
def embedded_server() -> Iterator[tuple[str, Path]]:
    """A private embedded Postgres in a temporary directory: yields (URL, data directory)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from pgserver.postgres_server import get_server

    directory = Path(tempfile.mkdtemp(prefix="pts-test-pg-"))
    server = get_server(directory, cleanup_mode="delete")
    url = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        for name, value in FAST_SETTINGS.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        conn.execute("SELECT pg_reload_conf()")
    logger.info("embedded Postgres in %s", directory)
    try:
        yield url, directory
    finally:
        server.cleanup()


def restart_embedded(pgdata: Path) -> None:
    """Restart an embedded Postgres (fast shutdown: every connection is dropped)."""
    import pgserver

    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs Postgres as this user
    # -l: the new postmaster must not inherit our stdout, or this call never returns.
    subprocess.run(
        [str(pg_ctl), "-D", str(pgdata), "-l", str(pgdata / "log"), "-w", "-m", "fast", "restart"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=user,
        timeout=60,
    )


class DatabaseFactory:
    """Creates one database per test, cloned from a migrated template."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.template = f"pts_template_{os.getpid()}"
        self._admin = psycopg.connect(server_url, autocommit=True)
        self._drop(self.template)
        self._admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        asyncio.run(migrate(with_database(server_url, self.template)))

    def create(self, *, template: str | None = None) -> str:
        """A new database (a copy of the migrated template by default); returns its URL."""
        name = f"pts_test_{uuid.uuid4().hex[:16]}"
        self._admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template or self.template)
            )
        )
        return with_database(self.server_url, name)

    def create_empty(self) -> str:
        """A new database without the pts schema."""
        return self.create(template="template0")

    def drop(self, url: str) -> None:
        self._drop(database_name(url))

    def _drop(self, name: str) -> None:
        self._admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def close(self) -> None:
        self._drop(self.template)
        self._admin.close()

"""Finding a database: the configured URL, or an embedded Postgres started on demand."""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from pts.errors import ConfigurationError
from pts.settings import Settings, check_dsn

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

logger = logging.getLogger("pts.database")


def resolve_dsn(settings: Settings | None = None) -> str:
    """The database URL to use: the configured one, else the embedded server's.

    With neither ``PTS_DATABASE_URL`` nor ``DATABASE_URL`` set, starts (or
    reuses) the embedded Postgres whose data lives in ``settings.data_dir``.
    """
    settings = Settings.from_env() if settings is None else settings
    if settings.database_url is not None:
        return settings.database_url
    return start_embedded(settings.data_dir)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded Postgres in ``data_dir/pgdata``; return its URL.

    The server keeps running after this process exits, so every ``pts``
    command (and every worker process) shares it; ``pts db --stop`` stops it.
    """
    server = _embedded_server(data_dir)
    return server.get_uri()


def stop_embedded(data_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the embedded Postgres in ``data_dir`` if it runs; True if one was stopped.

    Sends the postmaster SIGINT (Postgres' "fast" shutdown: open sessions are
    rolled back, committed data is safe) and waits for it to exit.
    """
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_file.exists():
        raise ConfigurationError(
            f"the embedded Postgres (pid {pid}) did not stop within {timeout} s"
        )
    return True


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(check_dsn(dsn))
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_name(dsn: str) -> str:
    """The database a URL names (``postgres`` if it names none)."""
    return urlsplit(check_dsn(dsn)).path.lstrip("/") or "postgres"


def _embedded_server(data_dir: Path) -> PostgresServer:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers);
        # pgserver then keeps its lock file under /tmp, which is fine.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    first = not (pgdata / "PG_VERSION").exists()
    logger.info(
        "embedded Postgres in %s%s", data_dir, " (first start: initialising)" if first else ""
    )
    # pgserver logs every command it runs, with its whole output (initdb's is
    # some 40 lines), at INFO: noise in any app whose root logger shows INFO
    # (Litestar's default). Its warnings and errors still show.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # cleanup_mode=None: leave the server running for the next command.
    return get_server(pgdata, cleanup_mode=None)

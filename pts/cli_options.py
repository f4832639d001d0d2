"""What several ``pts`` commands share: the ``--dsn`` option and the settings it overrides,
and the check that a port is free before a server starts."""

from __future__ import annotations

import dataclasses

import click

from pts.settings import Settings

__all__ = ["check_port_free", "dsn_option", "settings_for"]


def settings_for(dsn: str | None) -> Settings:
    """The environment's settings, with ``--dsn`` taking precedence."""
    env = Settings.from_env()
    return env if dsn is None else dataclasses.replace(env, database_url=dsn)


dsn_option = click.option(
    "--dsn",
    default=None,
    metavar="URL",
    help="Postgres URL (default: PTS_DATABASE_URL, DATABASE_URL, else the embedded Postgres).",
)


def check_port_free(host: str, port: int) -> None:
    """Fail with one line naming ``--port`` if ``host:port`` cannot be bound (before any banner).

    Binds and releases the address as uvicorn will (SO_REUSEADDR), so a port
    another server listens on is caught here, not after "running on" is printed.
    """
    import errno
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} is in use ({shown}; another pts serve or pts demo?): "
                "stop it, or pass --port N"
            ) from None
        raise click.ClickException(
            f"cannot listen on {shown}: {exc.strerror or exc} (pass --host or --port)"
        ) from None

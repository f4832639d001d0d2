"""What several ``pts`` commands share: the ``--dsn`` option and the settings it overrides."""

from __future__ import annotations

import dataclasses

import click

from pts.settings import Settings

__all__ = ["dsn_option", "settings_for"]


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

"""Configuration: one frozen object, read from the environment in one place."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from pts.errors import ConfigurationError

Driver: TypeAlias = Literal["asyncpg", "psycopg"]
DRIVERS: tuple[Driver, ...] = ("asyncpg", "psycopg")
PoolMode: TypeAlias = Literal["session", "transaction"]
POOL_MODES: tuple[PoolMode, ...] = ("session", "transaction")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting pts reads from the environment, with its default.

    ============================  ===============================================
    ``PTS_DATABASE_URL``          Postgres URL; falls back to ``DATABASE_URL``;
                                  with neither, an embedded Postgres is started.
    ``PTS_DRIVER``                ``asyncpg`` (default) or ``psycopg``.
    ``PTS_POOL_MIN_SIZE``         connections kept open per process (default 1).
    ``PTS_POOL_MAX_SIZE``         most connections per process (default 10).
    ``PTS_DATA_DIR``              where the embedded Postgres keeps its data
                                  (default ``.pts`` in the working directory).
    ``PTS_SHUTDOWN_GRACE``        seconds live answers get to finish when the
                                  server stops on Ctrl+C (default 5; see
                                  pts.http.shutdown).
    ``PTS_DRAIN_TIMEOUT``         seconds live answers get to finish when the
                                  server is sent SIGTERM: a rolling deploy's
                                  drain (default 120; see pts.http.shutdown).
    ``PTS_POOL_MODE``             ``session`` (default) or ``transaction``: set
                                  ``transaction`` when the URL reaches Postgres
                                  through a pooler in transaction pooling mode
                                  (PgBouncer ``pool_mode = transaction``): pts then
                                  uses no prepared statements that outlive a
                                  transaction, on either driver.
    ``PTS_LISTEN_DATABASE_URL``   where the one LISTEN connection per process
                                  goes (default: ``PTS_DATABASE_URL``). LISTEN
                                  needs a session of its own: with
                                  ``PTS_POOL_MODE=transaction`` give a direct URL
                                  (or a session-mode pool's).
    ``PTS_NOTIFY_V1``             ``1``/``true``: batches of appends announce their
                                  streams on ``pts_v1`` (one NOTIFY per stream)
                                  rather than ``pts_v2``, for a rolling upgrade
                                  while processes from before migration 0004 still
                                  listen (default off).
    ============================  ===============================================
    """

    database_url: str | None = None
    driver: Driver = "asyncpg"
    pool_min_size: int = 1
    pool_max_size: int = 10
    data_dir: Path = Path(".pts")
    shutdown_grace: float = 5.0
    drain_timeout: float = 120.0
    pool_mode: PoolMode = "session"
    listen_database_url: str | None = None
    notify_v1: bool = False

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS:
            raise ConfigurationError(
                f"unknown driver {self.driver!r}: choose one of {', '.join(DRIVERS)}"
            )
        if self.pool_min_size < 0 or self.pool_max_size < 1:
            raise ConfigurationError("pool sizes must be at least 0 (min) and 1 (max)")
        if self.pool_min_size > self.pool_max_size:
            raise ConfigurationError(
                f"pool min size {self.pool_min_size} exceeds max size {self.pool_max_size}"
            )
        if not 0 <= self.shutdown_grace < math.inf:
            raise ConfigurationError("the shutdown grace must be a finite number of seconds >= 0")
        if not 0 <= self.drain_timeout < math.inf:
            raise ConfigurationError("the drain timeout must be a finite number of seconds >= 0")
        if self.pool_mode not in POOL_MODES:
            raise ConfigurationError(
                f"unknown pool mode {self.pool_mode!r}: choose one of {', '.join(POOL_MODES)}"
            )
        if self.database_url is not None:
            check_dsn(self.database_url)
        if self.listen_database_url is not None:
            check_dsn(self.listen_database_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        url = env.get("PTS_DATABASE_URL") or env.get("DATABASE_URL") or None
        driver = env.get("PTS_DRIVER", "asyncpg")
        if driver not in DRIVERS:
            raise ConfigurationError(
                f"PTS_DRIVER={driver!r} is not a driver: choose one of {', '.join(DRIVERS)}"
            )
        pool_mode = env.get("PTS_POOL_MODE") or "session"
        if pool_mode not in POOL_MODES:
            raise ConfigurationError(
                f"PTS_POOL_MODE={pool_mode!r} is not a pool mode: "
                f"choose one of {', '.join(POOL_MODES)}"
            )
        return cls(
            database_url=url,
            driver=driver,
            pool_min_size=_int(env, "PTS_POOL_MIN_SIZE", 1),
            pool_max_size=_int(env, "PTS_POOL_MAX_SIZE", 10),
            data_dir=Path(env.get("PTS_DATA_DIR", ".pts")),
            shutdown_grace=_seconds(env, "PTS_SHUTDOWN_GRACE", 5.0),
            drain_timeout=_seconds(env, "PTS_DRAIN_TIMEOUT", 120.0),
            pool_mode=pool_mode,
            listen_database_url=env.get("PTS_LISTEN_DATABASE_URL") or None,
            notify_v1=_bool(env, "PTS_NOTIFY_V1", False),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:  # nan fails both
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds (0 or more)")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None


def check_dsn(dsn: str) -> str:
    """Return ``dsn`` if it is a ``postgresql://`` (or ``postgres://``) URL, else raise.

    Both drivers accept URLs; asyncpg does not accept libpq's ``key=value`` form.
    """
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(
            f"the database URL must start with postgresql:// or postgres:// (got {dsn[:20]!r}...)"
        )
    return dsn

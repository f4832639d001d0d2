"""Settings come from the environment in one place and fail clearly on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from pts import ConfigurationError, Settings
from pts.database import database_name, with_database


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.driver == "asyncpg"
    assert (s.pool_min_size, s.pool_max_size) == (1, 10)
    assert s.data_dir == Path(".pts")
    assert (s.pool_mode, s.listen_database_url) == ("session", None)
    assert s.notify_v1 is False


def test_pool_mode_and_listen_url_are_read() -> None:
    env = {"PTS_POOL_MODE": "transaction", "PTS_LISTEN_DATABASE_URL": "postgresql://db/x"}
    s = Settings.from_env(env)
    assert (s.pool_mode, s.listen_database_url) == ("transaction", "postgresql://db/x")


def test_pts_database_url_wins_over_database_url() -> None:
    env = {"PTS_DATABASE_URL": "postgresql://a/x", "DATABASE_URL": "postgresql://b/y"}
    assert Settings.from_env(env).database_url == "postgresql://a/x"
    assert Settings.from_env({"DATABASE_URL": "postgres://b/y"}).database_url == "postgres://b/y"


def test_values_are_read() -> None:
    env = {
        "PTS_DRIVER": "psycopg",
        "PTS_POOL_MIN_SIZE": "2",
        "PTS_POOL_MAX_SIZE": "20",
        "PTS_DATA_DIR": "/tmp/x",
    }
    s = Settings.from_env(env)
    assert (s.driver, s.pool_min_size, s.pool_max_size, s.data_dir) == (
        "psycopg",
        2,
        20,
        Path("/tmp/x"),
    )


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("true", True), (" On ", True), ("0", False), ("no", False)]
)
def test_notify_v1_is_a_boolean(raw: str, value: bool) -> None:
    assert Settings.from_env({"PTS_NOTIFY_V1": raw}).notify_v1 is value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PTS_DRIVER": "sqlite"}, "PTS_DRIVER"),
        ({"PTS_POOL_MAX_SIZE": "ten"}, "PTS_POOL_MAX_SIZE"),
        ({"PTS_POOL_MIN_SIZE": "5", "PTS_POOL_MAX_SIZE": "2"}, "exceeds"),
        ({"PTS_DATABASE_URL": "host=localhost dbname=x"}, "postgresql://"),
        ({"PTS_POOL_MODE": "statement"}, "PTS_POOL_MODE"),
        ({"PTS_LISTEN_DATABASE_URL": "host=db dbname=x"}, "postgresql://"),
        ({"PTS_NOTIFY_V1": "maybe"}, "PTS_NOTIFY_V1"),
    ],
)
def test_bad_values_fail_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_with_database() -> None:
    url = "postgresql://postgres:@/postgres?host=/tmp/sock"
    assert with_database(url, "other") == "postgresql://postgres:@/other?host=/tmp/sock"
    assert database_name(with_database(url, "other")) == "other"
    assert database_name("postgresql://u:p@h:5432") == "postgres"

"""The plugin on a database without the pts schema: it migrates at startup, or it fails there.

Never a 500 at the first request: with ``migrate`` on, the first request is
served; with it off, the app does not start, and says in one line what to run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from pts import PersistentTextStreaming, PTSPlugin
from pts.errors import SchemaNotMigrated
from pts.store.migrations import list_migrations
from tests.support.postgres import DatabaseFactory
from tests.support.servers import start_app, wait_exit, wait_ready

TOKEN = {"Authorization": "Bearer startup-test"}

APP = """\
from litestar import Litestar

from pts import PersistentTextStreaming, PTSPlugin

app = Litestar(plugins=[PTSPlugin(PersistentTextStreaming(), migrate={migrate})])
"""


@pytest.fixture
def empty_url(databases: DatabaseFactory) -> Iterator[str]:
    """A database with no pts schema at all."""
    url = databases.create_empty()
    try:
        yield url
    finally:
        databases.drop(url)


def _app_dir(tmp_path: Path, migrate: str) -> Path:
    (tmp_path / "startup_app.py").write_text(APP.format(migrate=migrate), encoding="utf-8")
    return tmp_path


def _env(url: str | None) -> dict[str, str]:
    env = {"PTS_ADMIN_TOKEN": "startup-test"}
    if url is not None:
        env["PTS_DATABASE_URL"] = url
    return env


async def _versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version FROM pts.schema_migrations ORDER BY 1")
        return [row[0] for row in rows]
    finally:
        await conn.close()


def _first_request_works(url: str) -> None:
    with httpx.Client(base_url=url, headers=TOKEN, timeout=10.0) as client:
        created = client.post("/streams")
        assert created.status_code == 201, created.text
        view = client.get(f"/streams/{created.json()['id']}")
        assert view.status_code == 200, view.text
        assert view.json()["status"] == "pending"


@pytest.mark.parametrize("migrate", ["True"])
async def test_migrate_true_migrates_an_empty_database_at_startup(
    empty_url: str, tmp_path: Path, migrate: str
) -> None:
    with start_app(_app_dir(tmp_path, migrate), "startup_app:app", env=_env(empty_url)) as server:
        wait_ready(server)
        _first_request_works(server.url)
    assert await _versions(empty_url) == [m.version for m in list_migrations()]


@pytest.mark.parametrize("migrate", ["False", "None"])
def test_without_migration_an_empty_database_fails_at_startup_in_one_line(
    empty_url: str, tmp_path: Path, migrate: str
) -> None:
    # None (the default) with a configured URL only checks the schema.
    with start_app(_app_dir(tmp_path, migrate), "startup_app:app", env=_env(empty_url)) as server:
        code = wait_exit(server)
        output = server.output()
    assert code != 0, output
    lines = [line for line in output.splitlines() if "pts cannot start" in line]
    assert len(lines) == 1, output
    assert "the database has no pts schema: run `uv run pts migrate`" in lines[0]
    assert "migrate=True" in lines[0]
    assert "Application startup failed" in output


async def test_an_older_schema_fails_at_startup_naming_the_missing_migration(
    db_url: str, tmp_path: Path
) -> None:
    last = list_migrations()[-1]
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("DELETE FROM pts.schema_migrations WHERE version = $1", last.version)
    finally:
        await conn.close()
    with start_app(_app_dir(tmp_path, "None"), "startup_app:app", env=_env(db_url)) as server:
        code = wait_exit(server)
        output = server.output()
    assert code != 0, output
    assert f"older than this code (missing {last.version:04d}_{last.name})" in output


async def test_open_checks_the_schema_and_migrates_on_request(empty_url: str) -> None:
    pts = PersistentTextStreaming(dsn=empty_url, sweeper=False)
    with pytest.raises(SchemaNotMigrated, match="no pts schema: run `uv run pts migrate`"):
        await pts.open()
    await pts.open(migrate=True)
    try:
        stream_id = await pts.create_stream()
        assert (await pts.get_stream(stream_id)).id == stream_id
    finally:
        await pts.close()


def test_plugin_migrate_option_defaults_to_none() -> None:
    plugin = PTSPlugin(PersistentTextStreaming(dsn="postgresql://nobody@127.0.0.1:9/x"))
    assert plugin.migrate is None


@pytest.mark.timeout(120)
def test_the_embedded_database_is_migrated_by_default(tmp_path: Path) -> None:
    """No URL configured: the default migrates the embedded Postgres in PTS_DATA_DIR."""
    env = {k: v for k, v in os.environ.items() if k not in ("PTS_DATABASE_URL", "DATABASE_URL")}
    env["PTS_DATA_DIR"] = str(tmp_path / "data")
    app_dir = _app_dir(tmp_path, "None")
    try:
        with start_app(app_dir, "startup_app:app", env={**env, **_env(None)}) as server:
            wait_ready(server, timeout=90)
            _first_request_works(server.url)
            output = server.output()
        # The embedded Postgres's own chatter (initdb's 40 lines) stays out of the log.
        assert "Successful postgres command" not in output
        assert "initdb" not in output
    finally:
        subprocess.run(
            [sys.executable, "-m", "pts.cli", "db", "--stop"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
            check=False,
        )

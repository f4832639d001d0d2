"""Acceptance: the real `pts` CLI in a subprocess, with zero configuration (embedded Postgres)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pts.store.migrations import list_migrations


def run_pts(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pts.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def bare_env() -> dict[str, str]:
    """The environment without any database setting, as on a fresh machine."""
    env = {k: v for k, v in os.environ.items() if k not in ("PTS_DATABASE_URL", "DATABASE_URL")}
    env.pop("PTS_DATA_DIR", None)
    return env


@pytest.fixture
def workdir(tmp_path: Path, bare_env: dict[str, str]) -> Iterator[Path]:
    yield tmp_path
    # Whatever happened, do not leave an embedded server running.
    run_pts("db", "--stop", cwd=tmp_path, env=bare_env)


@pytest.mark.timeout(120)
def test_migrate_twice_on_the_embedded_database(workdir: Path, bare_env: dict[str, str]) -> None:
    migrations = list_migrations()
    first = run_pts("migrate", cwd=workdir, env=bare_env)
    assert first.returncode == 0, first.stderr
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in migrations)
    assert f"applied {len(migrations)} migration(s): {names}" in first.stdout
    assert "0001_initial, 0002_durable_streams, 0003_" in first.stdout
    assert (workdir / ".pts" / "pgdata" / "PG_VERSION").exists()

    second = run_pts("migrate", cwd=workdir, env=bare_env)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout

    db = run_pts("db", cwd=workdir, env=bare_env)
    assert db.returncode == 0, db.stderr
    url = db.stdout.strip()
    assert url.startswith("postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pts.schema_migrations").fetchone()
        assert row == (len(migrations),)

    stop = run_pts("db", "--stop", cwd=workdir, env=bare_env)
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stdout
    assert not (workdir / ".pts" / "pgdata" / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_bad_dsn_is_a_clear_error(tmp_path: Path, bare_env: dict[str, str]) -> None:
    result = run_pts("migrate", "--dsn", "host=localhost", cwd=tmp_path, env=bare_env)
    assert result.returncode == 1
    assert "postgresql://" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path, bare_env: dict[str, str]) -> None:
    url = "postgresql://nobody@127.0.0.1:9/nothing"  # port 9 (discard): nothing listens
    result = run_pts("migrate", "--dsn", url, cwd=tmp_path, env=bare_env)
    assert result.returncode == 1
    assert "cannot connect to the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_tail_prints_a_stream_and_its_final_status(
    db_url: str, bare_env: dict[str, str], tmp_path: Path
) -> None:
    from pts import StreamStatus, SyncStore

    with SyncStore(db_url) as store:
        info = store.create_stream(status=StreamStatus.STREAMING)
        size = store.append(info.id, "Hello, 世界. ".encode(), offset=0)
        store.append(
            info.id, "Bye 👋".encode(), offset=size, finish=StreamStatus.ABORTED, reason="stop"
        )
    whole = run_pts("tail", str(info.id), "--dsn", db_url, cwd=tmp_path, env=bare_env)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout == "Hello, 世界. Bye 👋\n"
    assert "[aborted: stop]" in whole.stderr
    rest = run_pts(
        "tail", str(info.id), "--offset", str(size), "--dsn", db_url, cwd=tmp_path, env=bare_env
    )
    assert rest.stdout == "Bye 👋\n"


def test_tail_unknown_stream_is_a_clear_error(
    db_url: str, bare_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_pts("tail", "not-a-uuid", "--dsn", db_url, cwd=tmp_path, env=bare_env)
    assert result.returncode == 1
    assert "is not a stream id" in result.stderr
    assert "Traceback" not in result.stderr
    unknown = str(uuid.uuid4())
    result = run_pts("tail", unknown, "--dsn", db_url, cwd=tmp_path, env=bare_env)
    assert result.returncode == 1
    assert "not found" in result.stderr
    assert "Traceback" not in result.stderr

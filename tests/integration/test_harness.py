"""The test harness itself (tests/support): the subprocess kinds and their waits."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from pts.testing.process import output_of, spawn, stop_process
from tests.support.servers import ServerFailed, server_process, start_app, wait_exit, wait_ready

APP = """
from litestar import Litestar, get

@get("/")
async def index() -> dict[str, str]:
    return {"cwd": __import__("os").getcwd()}

app = Litestar([index])
"""


def test_spawn_runs_the_command_in_the_given_directory(tmp_path: Path) -> None:
    with tempfile.TemporaryFile() as log:
        process = spawn([sys.executable, "-c", "import os; print(os.getcwd())"], log, cwd=tmp_path)
        assert process.wait(30) == 0
        assert output_of(log).strip() == str(tmp_path)
        stop_process(process)


def test_an_app_started_from_a_directory_is_ready_once_uvicorn_listens(tmp_path: Path) -> None:
    (tmp_path / "harness_app.py").write_text(APP, encoding="utf-8")
    with start_app(tmp_path, "harness_app:app") as server:
        wait_ready(server)
        assert httpx.get(server.url + "/", timeout=10).json() == {"cwd": str(tmp_path)}
    assert server.process.poll() is not None  # stopped on exit


def test_wait_for_line_reads_each_line_once_and_fails_with_the_output() -> None:
    script = "print('one', flush=True); print('two', flush=True); print('one again', flush=True)"
    with server_process([sys.executable, "-c", script], 9, health=None) as server:
        assert server.wait_for_line("one") == "one\n"
        assert server.wait_for_line("one") == "one again\n"  # "two" was looked at and passed
        assert wait_exit(server) == 0
        with pytest.raises(ServerFailed, match="exited before printing 'two'"):
            server.wait_for_line("two")


def test_a_server_that_exits_before_it_is_healthy_fails_with_its_output() -> None:
    command = [sys.executable, "-c", "import sys; print('no database'); sys.exit(3)"]
    with (
        pytest.raises(ServerFailed, match="exited with code 3") as failed,
        server_process(command, 9),
    ):
        pass
    assert "no database" in str(failed.value)

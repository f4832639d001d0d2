"""``pts serve`` and ``pts demo`` on a port in use: one line naming ``--port``, before any banner.

And ``--no-auth`` warns once, not once in the CLI and again in the worker.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import HOST, run_pts_serve


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_port_in_use_is_one_clear_line_before_any_banner(
    db_url: str, tmp_path: Path, command: str
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pts.cli",
                command,
                "--host",
                HOST,
                "--port",
                str(port),
                "--dsn",
                db_url,
            ],
            cwd=Path(__file__).parents[2],  # pts demo runs from a checkout
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""  # no "serving on" / "demo chat on" banner
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} is in use" in lines[0]
    assert "--port" in lines[0]


async def test_no_auth_warns_once(db_url: str) -> None:
    with run_pts_serve(db_url, "--no-auth", env={"PTS_ADMIN_TOKEN": ""}) as server:
        output = server.output()
    assert output.count("no access control") == 1, output

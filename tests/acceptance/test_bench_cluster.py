"""``pts bench cluster`` end to end with tiny parameters (issue 15).

A benchmark, not a timed test: nothing here asserts a duration or a latency;
only that every phase ran and that nothing was lost, duplicated or left open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.timeout(240)
def test_bench_cluster_loses_no_answer_through_a_sigterm_and_a_sigkill(
    db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "cluster.json"
    per_node, subscribers = 2, 2
    result = subprocess.run(
        [
            sys.executable, "-m", "pts.cli", "bench", "cluster",
            "--nodes", "3", "--streams-per-node", str(per_node),
            "--subscribers-per-stream", str(subscribers),
            "--sentences", "10", "--tokens-per-sentence", "5", "--pace", "0.02",
            "--stale-after", "2", "--timeout", "200", "--dsn", db_url, "--json", str(out),
        ],
        env={**os.environ, "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pts bench cluster: 3 nodes on one Postgres" in result.stdout
    figures: dict[str, Any] = json.loads(out.read_text())
    phases = {phase["phase"]: phase for phase in figures["phases"]}
    assert list(phases) == ["steady", "sigterm", "sigkill"]
    for phase in phases.values():
        assert phase["answers"] == 3 * per_node
        assert phase["subscribers"] == 3 * per_node * subscribers
        # Every subscriber's text is the persisted body: nothing missing, nothing twice.
        assert phase["missing_bytes"] == phase["duplicated_bytes"] == 0, phase
        assert phase["inexact_subscribers"] == 0, phase
        assert phase["answers_lost"] == 0, phase
        assert phase["delay_ms"]["n"] > 0
    # The drained node let its subscribers go: they read on from another node.
    assert phases["sigterm"]["reconnects"] >= 1
    assert phases["sigterm"]["killed_answers"] == 0
    # The killed node's answers ended `timeout`, their persisted text kept.
    killed = phases["sigkill"]
    assert killed["killed_answers"] == killed["killed_timeout"] == per_node
    assert killed["killed_text_kept"] == per_node

"""``pts bench driven`` runs end to end with tiny parameters: figures are present and sane.

A benchmark, not a timed test: nothing here asserts a duration or a ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pts.bench.driven import DrivenConfig, answer_tokens, summarize
from pts.flush import FlushPolicy

TOKENS, SENTENCES, REQUESTS, NAIVE, STREAMS = 50, 5, 3, 2, 5


def run_cli(*args: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
    # Warnings are errors in the bench process and in its server subprocess too.
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "pts.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_answer_tokens_form_the_sentences() -> None:
    tokens = answer_tokens(1000, 40)
    assert len(tokens) == 1000
    text = "".join(tokens)
    assert text.count(". ") == 40
    assert text.endswith(". ")
    assert not any(mark in text for mark in "!?\n")
    # Every sentence ends at a token's end, 25 tokens apart.
    assert [i for i, t in enumerate(tokens) if t.endswith(". ")] == list(range(24, 1000, 25))
    assert FlushPolicy().sentence_cut(text) == len(text)
    assert answer_tokens(7, 3) == answer_tokens(7, 3)
    assert sum(t.endswith(". ") for t in answer_tokens(7, 3)) == 3


@pytest.mark.parametrize(("tokens", "sentences"), [(0, 1), (5, 0), (5, 6)])
def test_answer_tokens_refuses_impossible_answers(tokens: int, sentences: int) -> None:
    with pytest.raises(ValueError, match="must be between"):
        answer_tokens(tokens, sentences)


def test_config_refuses_more_naive_answers_than_requests() -> None:
    with pytest.raises(ValueError, match="naive_requests"):
        DrivenConfig(dsn="postgresql://localhost/x", requests=2, naive_requests=3)


def test_summarize() -> None:
    stats = summarize([3.0, 1.0, 2.0], scale=1000)
    assert stats["n"] == 3
    assert (stats["min"], stats["median"], stats["max"]) == (1000.0, 2000.0, 3000.0)
    assert 2000.0 <= stats["p90"] <= 3000.0
    assert summarize([0.5])["p90"] == 0.5
    assert summarize([]) == {"n": 0}


def test_cli_refuses_more_sentences_than_tokens() -> None:
    result = run_cli("bench", "driven", "--tokens", "3", "--sentences", "4", timeout=30)
    assert result.returncode == 2
    assert "--sentences" in result.stderr


@pytest.mark.timeout(120)
def test_bench_driven_runs_and_reports_sane_figures(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_cli(
        "bench", "driven",
        "--tokens", str(TOKENS), "--sentences", str(SENTENCES),
        "--requests", str(REQUESTS), "--naive-requests", str(NAIVE),
        "--streams", str(STREAMS), "--rounds", "1", "--warmup", "1",
        "--timeout", "90", "--dsn", db_url, "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for heading in ("Driving-client overhead", "Database writes per answer", "Concurrency"):
        assert heading in result.stdout
    assert f"figures written to {out}" in result.stdout

    figures: dict[str, Any] = json.loads(out.read_text())
    assert figures["benchmark"] == "driven"
    assert figures["machine"]["cpu_count"] >= 1
    assert figures["machine"]["python"] == ".".join(map(str, sys.version_info[:3]))
    params = figures["parameters"]
    assert (params["tokens"], params["sentences"], params["requests"]) == (
        TOKENS,
        SENTENCES,
        REQUESTS,
    )
    assert (params["naive_requests"], params["streams"], params["rounds"]) == (NAIVE, STREAMS, 1)
    assert "dsn" not in params
    assert figures["database"]["fresh"] is True  # a bench database was made (and dropped)
    answer_bytes = len("".join(answer_tokens(TOKENS, SENTENCES)).encode())
    assert figures["answer"] == {"tokens": TOKENS, "sentences": SENTENCES, "bytes": answer_bytes}

    overhead = figures["overhead"]
    for kind in ("bare", "pts"):
        assert overhead[kind]["requests"] == REQUESTS
        for measure in ("ttfb_ms", "ttlb_ms"):
            stats = overhead[kind][measure]
            assert stats["n"] == REQUESTS
            assert 0 < stats["min"] <= stats["median"] <= stats["p90"] <= stats["max"]
        assert overhead[kind]["ttfb_ms"]["min"] <= overhead[kind]["ttlb_ms"]["max"]
    assert overhead["ttlb_ratio"] > 0
    assert set(overhead["targets"]) >= {"ttlb_met", "ttfb_met"}

    pts, naive = figures["writes"]["pts"], figures["writes"]["naive"]
    assert (pts["answers"], naive["answers"]) == (REQUESTS, NAIVE)
    assert (pts["done"], naive["done"]) == (REQUESTS, NAIVE)
    # pts: the claim, at most one append per sentence, the final status.
    assert 0 < pts["rows"]["min"] <= pts["rows"]["max"] <= SENTENCES + 1
    assert 3 <= pts["commits"]["min"] <= pts["commits"]["max"] <= SENTENCES + 3
    assert pts["persisted_bytes"]["min"] == pts["persisted_bytes"]["max"] == answer_bytes
    # naive: a row and a commit per token, plus the claim.
    assert naive["rows"]["min"] == naive["rows"]["max"] == TOKENS
    assert naive["commits"]["min"] == naive["commits"]["max"] == TOKENS + 1
    assert naive["ttlb_ms"]["n"] == NAIVE

    concurrency = figures["concurrency"]
    assert concurrency["streams"] == STREAMS
    for kind in ("bare", "pts"):
        assert concurrency[kind]["requests"] == STREAMS
        assert concurrency[kind]["tokens_per_s"]["median"] > 0
    assert concurrency["pts"]["done"] == STREAMS
    assert concurrency["pts"]["rows"]["max"] <= SENTENCES + 1
    assert concurrency["ttlb_ratio"] > 0

    checks = figures["checks"]
    responses = 2 * REQUESTS + NAIVE + 2 * STREAMS
    assert checks["responses"] == responses
    assert checks["bytes_delivered"] == checks["bytes_expected"] == responses * answer_bytes
    assert checks["body_mismatches"] == 0

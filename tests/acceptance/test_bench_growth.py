"""``pts bench growth`` end to end with tiny parameters, and its configuration.

A benchmark, not a timed test: nothing here asserts a duration or a ratio's
size; only that every table is there with a row per level and that every
figure is a number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pts.bench.config import GrowthConfig, counts
from pts.bench.growth_report import NO_COMPACTION
from tests.acceptance.test_bench import run_cli

STREAMS, APPENDS, SIZES, TABLE = (2, 5), 12, (10, 60), (3, 400)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _latencies(stats: dict[str, Any], n: int) -> None:
    assert stats["n"] == n
    assert all(_number(stats[k]) for k in ("p50", "p99", "min", "max"))
    assert 0 < stats["min"] <= stats["p50"] <= stats["p99"] <= stats["max"]


def _reads(reads: dict[str, Any], rows: int | None = None) -> None:
    _latencies(reads["tail_ms"], 3)
    assert reads["catchup_mb_per_s"]["n"] == 2
    assert _number(reads["catchup_mb_per_s"]["p50"])
    assert reads["catchup_mb_per_s"]["p50"] > 0
    assert reads["gets_per_catchup"] >= 1
    if rows is not None:
        assert reads["rows"] == rows


def _table(stdout: str, heading: str) -> list[str]:
    """The lines of the table under the line starting with ``heading`` (header included)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    body = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        body.append(line)
    return body


@pytest.mark.timeout(150)
def test_bench_growth_prints_a_table_per_growth_with_a_row_per_level(
    db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "growth.json"
    result = run_cli(
        "bench", "growth",
        "--stream-counts", ",".join(map(str, STREAMS)), "--appends", str(APPENDS),
        "--sequential-appends", "4", "--concurrency", "3",
        "--stream-appends", ",".join(map(str, SIZES)), "--table-rows", ",".join(map(str, TABLE)),
        "--tail-reads", "3", "--catchup-reads", "2", "--timeout", "120",
        "--dsn", db_url, "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"figures written to {out}" in result.stdout

    streams = _table(result.stdout, "Appends spread over more streams")
    assert streams[0].split()[:3] == ["streams", "sequential", "p50"]
    assert [line.split()[0] for line in streams[1:]] == [str(n) for n in STREAMS]
    assert streams[1].count("(1.00x)") == 4  # the first level is its own reference
    sizes = _table(result.stdout, "One stream as it grows")
    ratios = [line for line in sizes if "catch-up compacted / open:" in line]
    sizes = [line for line in sizes if line not in ratios]
    assert len(sizes) == 1 + 2 * len(SIZES)  # per size: open, then compacted
    assert [line.split()[0] for line in sizes[1::2]] == [str(n) for n in SIZES]
    table = _table(result.stdout, "A stream's tail read as the table grows")
    assert [line.split()[0] for line in table[1:-1]] == [f"{n:,}" for n in TABLE]
    assert "tail p50 moved" in table[-1]

    figures: dict[str, Any] = json.loads(out.read_text())
    assert figures["benchmark"] == "growth"
    assert "dsn" not in figures["parameters"]
    assert [level["streams"] for level in figures["streams"]] == list(STREAMS)
    for level in figures["streams"]:
        _latencies(level["sequential_ms"], 4)
        _latencies(level["concurrent_ms"], APPENDS)
        assert _number(level["ops_per_s"])
        assert level["ops_per_s"] > 0
    compaction = figures["compaction"]
    assert compaction is True  # the store compacts: every size has its compacted row
    assert [level["appends"] for level in figures["stream_size"]] == list(SIZES)
    for level in figures["stream_size"]:
        assert level["bytes"] == level["appends"] * 100
        _reads(level["open"], rows=level["appends"])  # a row per append, before compaction
        if compaction:
            assert level["removed_rows"] >= 0
            _reads(level["compacted"])
            assert 1 <= level["compacted"]["rows"] <= level["appends"]
        else:
            assert level["removed_rows"] is None
            assert "compacted" not in level
    assert (NO_COMPACTION in result.stdout) is not compaction
    assert len(ratios) == (1 if compaction else 0)
    assert [level["table_rows"] for level in figures["table_size"]] == list(TABLE)
    for level in figures["table_size"]:  # tail reads only, as many per level
        _latencies(level["tail_ms"], 3)
        assert set(level) == {"tail_ms", "table_rows"}


def test_counts_are_ascending_and_positive() -> None:
    assert counts("10,1000,10000") == (10, 1000, 10000)
    assert counts((3, 5)) == (3, 5)
    for bad in ("", "0,10", "10,5", "5,5", "x"):
        with pytest.raises(ValueError, match="ascending counts"):
            counts(bad)


def test_growth_config_validates() -> None:
    config = GrowthConfig(dsn="postgresql://u:secret@h/x")
    assert config.stream_counts == (10, 1000, 10000)
    assert config.stream_appends == (1000, 10000, 100000)
    assert config.table_rows == (10, 1_000_000)
    assert "dsn" not in config.parameters()
    with pytest.raises(ValueError, match="concurrency"):
        GrowthConfig(dsn="postgresql://h/x", concurrency=0)
    with pytest.raises(ValueError, match="ascending"):
        GrowthConfig(dsn="postgresql://h/x", table_rows=(10, 5))


def test_bench_growth_refuses_counts_that_do_not_grow() -> None:
    result = run_cli("bench", "growth", "--stream-counts", "100,10", timeout=30)
    assert result.returncode == 2
    assert "--stream-counts" in result.stderr
    assert "Traceback" not in result.stderr

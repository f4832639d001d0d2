"""The report of ``pts bench growth``: a table per kind of growth, each level next to the first.

Every figure cell is ``value (ratio)``, the ratio to the same figure at the
first level of its table (above 1: larger; for a latency that is slower).
"""

from __future__ import annotations

from typing import Any

from pts.bench.common import table

__all__ = ["NO_COMPACTION", "TAIL_TARGET", "format_report"]

NO_COMPACTION = "n/a (no compaction)"
TAIL_TARGET = 0.20
"""The tail read's latency may move this much from the smallest table to the largest."""


def _cell(value: float, first: float, unit: str) -> str:
    text = f"{value:,.2f} ms" if unit == "ms" else f"{value:,.0f} {unit}"
    if unit == "MB/s":
        text = f"{value:,.1f} MB/s"
    ratio = value / first if first > 0 else float("nan")
    return f"{text} ({ratio:.2f}x)"


def _streams(levels: list[dict[str, Any]], p: dict[str, Any]) -> list[str]:
    first = levels[0]
    rows = [
        [
            f"{level['streams']:,}",
            _cell(level["sequential_ms"]["p50"], first["sequential_ms"]["p50"], "ms"),
            _cell(level["sequential_ms"]["p99"], first["sequential_ms"]["p99"], "ms"),
            _cell(level["ops_per_s"], first["ops_per_s"], "appends/s"),
            _cell(level["concurrent_ms"]["p99"], first["concurrent_ms"]["p99"], "ms"),
        ]
        for level in levels
    ]
    header = [
        "streams",
        "sequential p50",
        "sequential p99",
        f"{p['concurrency']} connections",
        "their p99",
    ]
    return [
        f"Appends spread over more streams ({p['sequential_appends']:,} sequential, "
        f"then {p['appends']:,} from {p['concurrency']} connections, per level)",
        *table(header, rows),
    ]


def _reads_row(label: str, reads: dict[str, Any] | None, first: dict[str, Any]) -> list[str]:
    if reads is None:
        return [label, NO_COMPACTION, "", "", ""]
    return [
        label,
        f"{reads['rows']:,}",
        _cell(reads["tail_ms"]["p50"], first["tail_ms"]["p50"], "ms"),
        _cell(reads["tail_ms"]["p99"], first["tail_ms"]["p99"], "ms"),
        _cell(reads["catchup_mb_per_s"]["p50"], first["catchup_mb_per_s"]["p50"], "MB/s"),
    ]


def _rate(reads: dict[str, Any]) -> float:
    return float(reads["catchup_mb_per_s"]["p50"])


def _stream_size(levels: list[dict[str, Any]], p: dict[str, Any]) -> list[str]:
    first = levels[0]["open"]
    rows = []
    for level in levels:
        size = f"{level['appends']:,} appends ({level['bytes'] / 1e6:g} MB)"
        rows.append(_reads_row(f"{size}, open", level["open"], first))
        rows.append(_reads_row("  closed, compacted", level.get("compacted"), first))
    lines = [
        f"One stream as it grows (tail = the last {p['payload']} bytes, {p['tail_reads']} reads; "
        f"catch-up from offset -1, {p['catchup_reads']} reads)",
        *table(["", "chunk rows", "tail p50", "tail p99", "catch-up"], rows),
    ]
    ratios = [
        f"{lv['appends']:,}: {_rate(lv['compacted']) / _rate(lv['open']):.2f}x"
        for lv in levels
        if "compacted" in lv
    ]
    if ratios:
        lines.append("  catch-up compacted / open: " + ", ".join(ratios))
    return lines


def _table_size(levels: list[dict[str, Any]], p: dict[str, Any]) -> list[str]:
    first = levels[0]["tail_ms"]
    rows = [
        [
            f"{level['table_rows']:,}",
            _cell(level["tail_ms"]["p50"], first["p50"], "ms"),
            _cell(level["tail_ms"]["p99"], first["p99"], "ms"),
        ]
        for level in levels
    ]
    moved = levels[-1]["tail_ms"]["p50"] / first["p50"] - 1 if first["p50"] > 0 else 0.0
    met = "met" if abs(moved) <= TAIL_TARGET else "NOT met"
    return [
        f"A stream's tail read as the table grows (its {p['table_rows'][0]:,} rows beside other "
        f"streams' rows, VACUUM (ANALYZE); a database per size, {p['tail_reads']} reads each, "
        "in turns)",
        *table(["chunk rows in the table", "tail p50", "tail p99"], rows),
        f"  tail p50 moved {moved:+.0%} from the smallest table to the largest "
        f"(target within {TAIL_TARGET:.0%}: {met})",
    ]


def format_report(result: dict[str, Any]) -> str:
    """The three tables, each level next to the first."""
    p, m = result["parameters"], result["machine"]
    lines = [
        "pts bench growth: how the figures move as the work grows, in one run",
        f"  machine: {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}",
        f"  server:  {result['server']}; {p['payload']}-byte text/plain appends over HTTP",
        "  (ratio) = the figure / the same figure at the table's first level",
        "",
        *_streams(result["streams"], p),
        "",
        *_stream_size(result["stream_size"], p),
        "",
        *_table_size(result["table_size"], p),
        "",
        f"  every read checked against the bytes written; {result['elapsed_s']:.1f} s in all",
    ]
    return "\n".join(lines)

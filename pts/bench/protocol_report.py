"""The report of ``pts bench protocol``: pts next to the reference server, row by row."""

from __future__ import annotations

from typing import Any

from pts.bench.common import table

__all__ = ["LABELS", "ROWS", "format_report", "speedup"]

LABELS = {
    "pts": "pts",
    "reference": "reference (memory)",
    "reference-file": "reference (file)",
    "reference-url": "reference (URL)",
}


def _value(figures: dict[str, Any], key: str) -> float:
    kind, *rest = key.split(".")
    node: Any = figures[kind]
    for part in rest:
        node = node[part]
    return float(node)


ROWS: list[tuple[str, str, str, bool]] = [
    # key, label, unit, higher is better
    ("sequential.latency_ms.p50", "append latency p50 (sequential)", "ms", False),
    ("sequential.latency_ms.p99", "append latency p99 (sequential)", "ms", False),
    ("throughput.ops_per_s", "append throughput", "ops/s", True),
    ("throughput.latency_ms.p99", "  its append latency p99", "ms", False),
    ("catchup.mb_per_s.p50", "catch-up read", "MB/s", True),
    ("sse.append_to_data_ms.p50", "SSE first event p50 (append -> event)", "ms", False),
    ("sse.append_to_data_ms.p99", "SSE first event p99", "ms", False),
    ("sse.connect_to_control_ms.p50", "SSE connect -> first control p50", "ms", False),
]


def speedup(pts: dict[str, Any], other: dict[str, Any], key: str) -> float:
    """How many times better pts is on ``key`` (above 1: pts is better)."""
    higher = next(h for k, _l, _u, h in ROWS if k == key)
    mine, theirs = _value(pts, key), _value(other, key)
    if mine <= 0 or theirs <= 0:
        return float("nan")
    return mine / theirs if higher else theirs / mine


def _cell(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "ops/s":
        return f"{value:,.0f} ops/s"
    return f"{value:,.1f} {unit}"


def _ratio(speedup: float) -> str:
    if speedup != speedup:  # nan
        return "-"
    if speedup >= 1:
        return f"{speedup:.2f}x better"
    return f"{1 / speedup:.2f}x worse"


def format_report(result: dict[str, Any]) -> str:
    """The figures as a readable table, pts next to the reference server."""
    p, m, servers = result["parameters"], result["machine"], result["servers"]
    results, speedups = result["results"], result["pts_speedup"]
    targets = list(results)
    lines = [
        "pts bench protocol: Durable Streams over real HTTP, every server in the same run",
        f"  machine: {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}",
        f"  client:  {result['client']}",
    ]
    if "pts" in servers:
        srv, db = servers["pts"], servers["pts"]["database"]
        lines.append(
            f"  pts:     {srv['runner']} ({srv['loop']}, {srv['http']}), driver {srv['driver']}; "
            f"Postgres {db['server_version']} (fsync {db['fsync']}, synchronous_commit "
            f"{db['synchronous_commit']}), {'fresh' if db['fresh'] else 'shared'} database"
        )
    for target in targets:
        if target != "pts":
            srv = servers[target]
            lines.append(
                f"  {LABELS[target]}: the server at {srv['url']} (given, not started by the bench)"
                if "url" in srv
                else f"  {LABELS[target]}: {srv['package']} on Node {srv['node']}, "
                f"{srv['store']} store"
            )
    lines += [
        f"  {p['payload']}-byte text/plain appends; sequential {p['appends']:,} (+{p['warmup']} "
        f"warm-up); throughput {p['concurrency']} connections x {p['concurrent_appends']} "
        f"appends on {p['concurrency']} streams; catch-up {p['catchup_bytes'] / 1e6:g} MB in "
        f"{p['catchup_chunk']:,}-byte appends, read {p['catchup_reads']}x; SSE "
        f"{p['sse_events']} appends, {p['sse_connects']} connects",
        "",
    ]
    header = ["", *(LABELS[t] for t in targets)]
    header += [f"pts vs {LABELS[t]}" for t in speedups]
    rows = []
    for key, label, unit, _higher in ROWS:
        row = [label, *(_cell(_value(results[t], key), unit) for t in targets)]
        row += [_ratio(speedups[t][key]) for t in speedups]
        rows.append(row)
    lines += table(header, rows)
    criteria = result["criteria"]
    lines.append("")
    lines.append(
        f"  criteria (the protocol project's): append p50 <= {criteria['append_p50_ms_max']:g} "
        f"ms, p99 <= {criteria['append_p99_ms_max']:g} ms, throughput >= "
        f"{criteria['throughput_ops_min']:,.0f} ops/s"
    )
    for target, met in criteria["met"].items():
        missed = [name.removesuffix("_met") for name, ok in met.items() if not ok]
        lines.append(
            f"    {LABELS[target]}: "
            + ("all met" if not missed else "NOT met: " + ", ".join(missed))
        )
    method = result["method"]
    lines += [
        f"  SSE first event = {method['sse_first_event']}",
        f"  SSE connect = {method['sse_connect']}",
        f"  throughput: {method['throughput']}; client CPU "
        + ", ".join(
            f"{LABELS[t]} {results[t]['throughput']['client_cpu_pct']:.0f} %" for t in targets
        )
        + " (of one core)",
        f"  every stream read back exactly as appended; {result['elapsed_s']:.1f} s in all",
    ]
    return "\n".join(lines)

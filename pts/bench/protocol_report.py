"""The report of ``pts bench protocol``: pts next to the reference server, row by row."""

from __future__ import annotations

from typing import Any

from pts.bench.common import table

__all__ = ["LABELS", "ROWS", "format_report", "speedup"]

LABELS = {
    "pts": "pts",
    "pts-2": "pts (2 workers)",
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


POSTGRES_ROWS = [
    # key in throughput.postgres, label, format
    ("transactions_per_append", "  Postgres transactions per append", "{:.3f}"),
    ("writing_transactions_per_append", "    of which wrote (cluster-wide xids)", "{:.3f}"),
    ("notifies_per_append", "  NOTIFYs per append", "{:.3f}"),
    ("changes_per_notify", "  stream changes per NOTIFY", "{:.1f}"),
]
"""Rows only pts has (its database's counts over the throughput run): n/a elsewhere."""


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


def _postgres(figures: dict[str, Any], name: str, form: str) -> str:
    counted = figures["throughput"].get("postgres")
    return "n/a" if counted is None else form.format(counted[name])


def _workers(results: dict[str, Any]) -> list[str]:
    if not {"pts", "pts-2"} <= set(results):
        return []
    one, two = (results[t]["throughput"]["ops_per_s"] for t in ("pts", "pts-2"))
    return [
        f"  pts serve --workers 2: {two:,.0f} appends/s, {two / one:.2f}x 1 worker's {one:,.0f}"
    ]


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
    for target in (t for t in targets if t.startswith("pts")):
        srv, db = servers[target], servers[target]["database"]
        lines.append(
            f"  {LABELS[target]}: {srv['runner']} ({srv['loop']}, {srv['http']}), "
            f"driver {srv['driver']}; "
            f"Postgres {db['server_version']} (fsync {db['fsync']}, synchronous_commit "
            f"{db['synchronous_commit']}), {'fresh' if db['fresh'] else 'shared'} database"
        )
    for target in targets:
        if not target.startswith("pts"):
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
        if key == "throughput.latency_ms.p99":
            for name, text, form in POSTGRES_ROWS:
                cells = [_postgres(results[t], name, form) for t in targets]
                rows.append([text, *cells, *("" for _ in speedups)])
    lines += table(header, rows)
    lines += _workers(results)
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
        f"  Postgres per append (pts only): {method['postgres']}",
        f"  every stream read back exactly as appended; {result['elapsed_s']:.1f} s in all",
    ]
    return "\n".join(lines)

"""The figures of ``pts bench fanout`` (from its steps) and their report."""

from __future__ import annotations

from typing import Any

from pts.bench.common import machine, server_info, table
from pts.bench.config import FanoutConfig
from pts.bench.fanout_app import APP_FACTORY
from pts.bench.fanout_step import Context

__all__ = ["SCALING_P99_MS", "format_report", "results"]

# Targets from the issue (reported, never asserted).
TARGET_P99_MS = 50.0
SCALING_P99_MS = 100.0
TARGET_READS_PER_FLUSH = 1.0

CLIENT = (
    "asyncio.Protocol per subscriber (HTTP/1.1, Connection: close) in a separate "
    "process; data_received only timestamps and stores, parsing happens after the run"
)


def results(
    config: FanoutConfig,
    ctx: Context,
    main: dict[str, Any],
    scaling: dict[str, Any],
    load_nofile: int,
) -> dict[str, Any]:
    delay, reads, conns = main["delay_ms"], main["reads"], main["connections"]
    per_stream_max = reads["per_flush_per_stream_max"]
    return {
        "benchmark": "fanout",
        "machine": machine(),
        "parameters": config.parameters(),
        "server": {
            **server_info(APP_FACTORY),
            "producers": "in the server process (one task per stream, StreamWriter)",
            "open_files_limit": ctx.server_nofile,
            "poll_interval_s": ctx.poll_interval,
        },
        "client": CLIENT,
        "load_open_files_limit": load_nofile,
        "database": {**ctx.db.info, "fresh": ctx.db.fresh},
        "method": {
            "commit_time": (
                "arrival of the flush's NOTIFY (pts_v1) at the load process's own LISTEN "
                "connection; excludes NOTIFY delivery to the load process, which the "
                "server incurs too"
            ),
            "delay": (
                "arrival of the first SSE text event whose id (end byte offset) reaches the "
                "flush's size, minus the commit time; one sample per subscriber and flush"
            ),
            "clock": "time.monotonic() in the load process (one event loop; lag reported)",
        },
        "answer": {
            "tokens_per_stream": config.tokens,
            "sentences": config.sentences,
            "tokens_per_sentence": config.tokens_per_sentence,
            "pace_s": config.pace,
            "production_s_estimate": config.production_s,
        },
        "main": main,
        "targets": {
            "p99_ms_max": TARGET_P99_MS,
            "p99_met": delay["n"] > 0 and delay["p99"] < TARGET_P99_MS,
            "lossless_met": main["missing_bytes"] == 0
            and main["duplicated_bytes"] == 0
            and main["corrupt_events"] == 0,
            "connections_max": conns["limit"],
            "connections_met": conns["met"],
            "reads_per_flush_max": TARGET_READS_PER_FLUSH,
            "reads_met": per_stream_max is not None and per_stream_max <= TARGET_READS_PER_FLUSH,
        },
        "scaling": scaling,
    }


def _gc(stats: dict[str, list[float]]) -> str:
    gens = [
        f"gen{g} {int(n):,}x (max {top:.1f} ms)"
        for g, (n, top) in enumerate(zip(stats["collections"], stats["max_pause_ms"], strict=True))
        if n
    ]
    return f"{', '.join(gens) or 'none'}; paused {sum(stats['pause_ms']):,.0f} ms in all"


def _met(flag: bool) -> str:
    return "met" if flag else "NOT met"


def _f(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def format_report(result: dict[str, Any]) -> str:
    """The figures as readable tables."""
    p, m, srv, db = result["parameters"], result["machine"], result["server"], result["database"]
    a, main, t = result["answer"], result["main"], result["targets"]
    delay, reads, conns = main["delay_ms"], main["reads"], main["connections"]
    lines = [
        f"pts bench fanout: {p['streams']} streams x {a['sentences']} sentences of "
        f"{a['tokens_per_sentence']} tokens ({main['bytes_per_stream']['median']:,.0f} bytes), "
        f"{a['pace_s'] * 1000:g} ms/token (+-50 %), {p['subscribers']:,} SSE subscribers",
        f"  machine:  {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}",
        f"  server:   {srv['runner']} ({srv['loop']}, {srv['http']}), driver {srv['driver']}, "
        f"pool max {srv['pool_max_size']}; producers {srv['producers']}",
        f"  load:     {result['client']}",
        f"  database: Postgres {db['server_version']} (fsync {db['fsync']}, synchronous_commit "
        f"{db['synchronous_commit']}), {'fresh' if db['fresh'] else 'shared'} database",
        f"  commit time = {result['method']['commit_time']}",
        "",
        f"Main run: {main['subscribers']:,} subscribers ({main['per_stream']:g} per stream), "
        f"all connected before production",
    ]
    rows = [
        ["delay commit -> subscriber, p50", _f(delay.get("p50"), 2, " ms"), "", ""],
        [
            "                             p99",
            _f(delay.get("p99"), 2, " ms"),
            f"< {t['p99_ms_max']:g} ms",
            _met(t["p99_met"]),
        ],
        ["                             max", _f(delay.get("max"), 2, " ms"), "", ""],
        [
            "missing / duplicated bytes",
            f"{main['missing_bytes']} / {main['duplicated_bytes']}",
            "0 / 0",
            _met(t["lossless_met"]),
        ],
        [
            "server DB connections (max)",
            f"{conns['open_max_incl_connecting']} (production {conns['open_min']}-"
            f"{conns['open_max']}, active <= {conns['active_max']})",
            f"<= {conns['limit']} (pool + 1)",
            _met(t["connections_met"]),
        ],
        [
            "tail reads per flush per stream (max)",
            _f(reads["per_flush_per_stream_max"], 3),
            f"<= {t['reads_per_flush_max']:g}",
            _met(t["reads_met"]),
        ],
    ]
    lines += table(["", "measured", "target", ""], rows)
    cpu, lag = main["cpu_pct"], main["load_loop_lag_ms"]
    first, last = main["per_flush_ms"]["first_subscriber"], main["per_flush_ms"]["last_subscriber"]
    lines += [
        f"  delays: {main['delay_samples']:,} samples (a subscriber x a flush; "
        f"{main['delay_samples_expected']:,} expected), p90 {_f(delay.get('p90'), 2)} ms, "
        f"p99.9 {_f(delay.get('p99.9'), 2)} ms, min {_f(delay.get('min'), 2)} ms",
        f"  per flush: first subscriber p50 {_f(first.get('p50'), 2)} ms, p99 "
        f"{_f(first.get('p99'), 2)} ms (NOTIFY, tail read, first send); last subscriber p50 "
        f"{_f(last.get('p50'), 2)} ms, p99 {_f(last.get('p99'), 2)} ms",
        f"  subscribers: {main['subscribers_exact']:,} exact, {main['subscribers_complete']:,} "
        f"complete (final status done, response ended); corrupt events "
        f"{main['corrupt_events']}; bodies as written {main['bodies_as_written']}/"
        f"{main['streams']}",
        f"  flushes: {main['flushes']:,} ({main['flushes_per_stream']['median']:g} per stream, "
        f"{main['notifications']:,} notifications seen); tail reads {reads['tail']:,} = "
        f"{_f(reads['per_flush'], 3)} per flush overall",
        f"  reads by subscribers themselves: {reads['while_connecting']:,} while connecting "
        f"(catch-up + re-reads after {srv['poll_interval_s']:g} s of silence), "
        f"{reads['by_subscribers_during_production']:,} during production",
        f"  CPU during production: server {_f(cpu['server'], 0)} %, load "
        f"{_f(cpu['load'], 0)} % (of one core), machine {_f(cpu['machine'], 0)} % "
        f"(of {m['cpu_count']}); server CPU per event delivered "
        f"{_f(main['server_cpu_us_per_delivery'], 0)} us",
        f"  server garbage collector during production: {_gc(main['server_gc'])}",
        f"  load loop lag (a callback's wait) p99 {_f(lag.get('p99'), 2)} ms, "
        f"max {_f(lag.get('max'), 2)} ms; connect {main['connect_s']:.1f} s, production "
        f"{main['production_s']:.1f} s, drain {main['drain_s'] * 1000:.0f} ms",
    ]
    if delay.get("min", 0) < 0:
        lines.append(
            "  (min < 0: Postgres delivered that NOTIFY to the load process after the server "
            "had read and sent the flush: the commit-time proxy jitters by about that much)"
        )
    lines.append("")
    scaling = result["scaling"]
    lines.append(f"Scaling: subscribers while p99 < {scaling['threshold_p99_ms']:g} ms")
    rows = []
    for step in scaling["steps"]:
        if step.get("error"):
            continue  # listed below the table
        d, c, r = step["delay_ms"], step["connections"], step["reads"]
        rows.append(
            [
                f"{step['subscribers']:,}",
                f"{step['per_stream']:g}",
                _f(d.get("p50"), 1),
                _f(d.get("p99"), 1),
                _f(d.get("max"), 1),
                f"{step['missing_bytes']}/{step['duplicated_bytes']}",
                str(c["open_max_incl_connecting"]),
                _f(r["per_flush_per_stream_max"], 2),
                _f(step["cpu_pct"]["server"], 0),
                _f(max(step["server_gc"]["max_pause_ms"]), 0),
                f"{step['connect_s']:.1f}",
            ]
        )
    lines += table(
        [
            "subscribers",
            "per stream",
            "p50 ms",
            "p99 ms",
            "max ms",
            "miss/dup",
            "conns",
            "reads/flush",
            "server CPU %",
            "GC max ms",
            "connect s",
        ],
        rows,
    )
    lines += [
        f"  {step['subscribers']:,} subscribers failed: {step['error']}"
        for step in scaling["steps"]
        if step.get("error")
    ]
    largest, over = scaling["largest_holding"], scaling["smallest_failing"]
    verdict = (
        f"  largest count holding p99 < {scaling['threshold_p99_ms']:g} ms: "
        + ("none of those run" if largest is None else f"{largest:,}")
        + ("" if over is None else f" ({over:,} did not)")
    )
    lines.append(verdict)
    if scaling["stopped"]:
        lines.append(f"  stopped: {scaling['stopped']}")
    lines += [
        "",
        f"took {result['elapsed_s']:.1f} s; open-file limits: load "
        f"{result['load_open_files_limit']:,}, server {srv['open_files_limit']:,}",
    ]
    return "\n".join(lines)

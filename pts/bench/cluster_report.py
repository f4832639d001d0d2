"""The report of ``pts bench cluster``: one row per phase (see :mod:`pts.bench.cluster`)."""

from __future__ import annotations

from typing import Any

from pts.bench.common import table

__all__ = ["format_report"]


def format_report(result: dict[str, Any]) -> str:
    """The run as a table, one row per phase."""
    p = result["parameters"]
    rows = []
    for ph in result["phases"]:
        delay = ph["delay_ms"]
        killed = (
            f"{ph['killed_timeout']}/{ph['killed_answers']} timeout "
            f"({ph['killed_timeout_after_s']:.1f} s), text kept {ph['killed_text_kept']}"
            if ph["killed_answers"]
            else "-"
        )
        rows.append(
            [
                ph["phase"],
                f"{ph['answers']}",
                f"{ph['subscribers']}",
                f"{delay.get('p50', 0):.1f} / {delay.get('p99', 0):.1f}",
                f"{ph['missing_bytes']} / {ph['duplicated_bytes']}",
                f"{ph['answers_lost']}",
                killed,
                f"{ph['reconnects']}",
                f"{ph['connections_max']}",
                f"{ph['notifications_per_s']:.0f}",
            ]
        )
    header = [
        "phase",
        "answers",
        "subscribers",
        "delay p50/p99 ms",
        "missing/dup bytes",
        "lost",
        "killed node's answers",
        "reconnects",
        "PG conns",
        "NOTIFY/s",
    ]
    lines = [
        f"pts bench cluster: {p['nodes']} nodes on one Postgres, "
        f"{p['streams_per_node']} answers per node per phase, "
        f"{p['subscribers_per_stream']} subscribers each (stale_after {p['stale_after']:g} s)",
        "",
        *table(header, rows),
    ]
    return "\n".join(lines)

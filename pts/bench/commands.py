"""``pts bench driven|fanout|protocol|growth``: the command line, built from the configs.

Each flag comes from a config field's :func:`~pts.bench.config.option` (name,
default, range, help), so a parameter is declared once; ``--json`` and
``--dsn`` are common to all. The figures go to stdout, progress to stderr.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pts.bench.cluster_config import ClusterConfig
from pts.bench.config import (
    DrivenConfig,
    FanoutConfig,
    GrowthConfig,
    Option,
    ProtocolConfig,
)
from pts.cli_options import dsn_option, settings_for

__all__ = ["bench"]

_F = TypeVar("_F", bound=Callable[..., Any])

json_option = click.option(
    "--json",
    "json_path",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Also write every figure as JSON to this file.",
)


def _cli_fields(config: type) -> list[tuple[dataclasses.Field[Any], Option]]:
    return [(f, f.metadata["cli"]) for f in dataclasses.fields(config) if "cli" in f.metadata]


def config_options(config: type) -> Callable[[_F], _F]:
    """The config's fields that have an :class:`Option` as click options, in field order."""

    def decorate(function: _F) -> _F:
        for f, spec in reversed(_cli_fields(config)):
            default = f.default if spec.convert is None else spec.flag_default
            extra: dict[str, Any] = {"show_default": True} if default is not None else {}
            if spec.metavar:
                extra["metavar"] = spec.metavar
            flag = "--" + (spec.flag or f.name).replace("_", "-")
            function = click.option(flag, default=default, type=spec.type, help=spec.help, **extra)(
                function
            )
        return function

    return decorate


def _run(config: type, given: dict[str, Any], dsn: str | None, json_path: str | None) -> None:
    """Build ``config`` from the flags, run its benchmark, print (and write) its figures."""
    from pts.bench.client import BenchError
    from pts.database import resolve_dsn
    from pts.errors import PTSError

    values = {}
    for f, spec in _cli_fields(config):
        value = given[spec.flag or f.name]
        try:
            values[f.name] = value if spec.convert is None else spec.convert(value)
        except ValueError as exc:
            flag = "--" + (spec.flag or f.name).replace("_", "-")
            raise click.BadParameter(str(exc), param_hint=flag) from None
    try:
        needs_db = config is not ProtocolConfig or values["servers"] in ("both", "pts")
        url = resolve_dsn(settings_for(dsn)) if needs_db else None
        run, report = _benchmark(config)
        try:
            configured = config(dsn=url, **values)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        result = run(configured, progress=_progress)
    except (PTSError, BenchError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report(result))
    if json_path is not None:
        from pts.bench.common import write_json

        write_json(json_path, result)
        click.echo(f"figures written to {json_path}")


def _benchmark(config: type) -> tuple[Callable[..., dict[str, Any]], Callable[..., str]]:
    """The run and report functions of ``config``'s benchmark (imported only when run)."""
    if config is DrivenConfig:
        from pts.bench import driven, driven_report

        return driven.run_driven, driven_report.format_report
    if config is FanoutConfig:
        from pts.bench import fanout, fanout_report

        return fanout.run_fanout, fanout_report.format_report
    if config is ClusterConfig:
        from pts.bench import cluster, cluster_report

        return cluster.run_cluster, cluster_report.format_report
    if config is GrowthConfig:
        from pts.bench import growth, growth_report

        return growth.run_growth, growth_report.format_report
    from pts.bench import protocol, protocol_report

    return protocol.run_protocol, protocol_report.format_report


def _progress(message: str) -> None:
    """A benchmark's progress line, on stderr (the figures go to stdout)."""
    click.echo(message, err=True)


@click.group()
def bench() -> None:
    """Benchmarks: figures to read, measured over real HTTP (never a test)."""


@bench.command(short_help="pts.stream() vs a bare streaming response: latency, writes, load.")
@config_options(DrivenConfig)
@json_option
@dsn_option
def driven(json_path: str | None, dsn: str | None, **given: Any) -> None:
    """Driving a stream vs a bare streaming response, and writes per answer.

    Serves the same generator (TOKENS tokens forming SENTENCES sentences, no
    sleeps) through a bare Litestar Stream and through pts.stream() from a
    uvicorn subprocess, and reports time to first and last byte, commits and
    rows per answer (pts vs a commit per token; pts also with PACED_REQUESTS
    answers whose generator sleeps PACE seconds between tokens), and
    throughput with STREAMS concurrent streams. Runs in a fresh database
    created (and dropped) on the configured server.
    """
    if given["sentences"] > given["tokens"]:
        raise click.BadParameter("must not exceed --tokens", param_hint="--sentences")
    if given["naive_requests"] > given["requests"]:
        raise click.BadParameter("must not exceed --requests", param_hint="--naive-requests")
    _run(DrivenConfig, given, dsn, json_path)


@bench.command(short_help="Many SSE subscribers per stream: delay, loss, connections, reads.")
@config_options(FanoutConfig)
@json_option
@dsn_option
def fanout(json_path: str | None, dsn: str | None, **given: Any) -> None:
    """Fan-out to live SSE subscribers: delay, loss, connections, reads per flush.

    One uvicorn server process produces STREAMS streams (SENTENCES sentences
    each, PACE seconds per token) while SUBSCRIBERS SSE subscribers, connected
    beforehand from this process over real HTTP, watch them. Reports the delay
    from each flush's commit to each subscriber, missing and duplicated bytes,
    the server's database connections and reads per flush; then doubles the
    subscribers (up to MAX_SUBSCRIBERS) to find the largest count holding p99
    under 100 ms. Runs in a fresh database created (and dropped) on the
    configured server.
    """
    if given["subscribers"] < given["streams"]:
        raise click.BadParameter("must be at least --streams", param_hint="--subscribers")
    _run(FanoutConfig, given, dsn, json_path)


@bench.command(short_help="Durable Streams over HTTP: pts vs the reference Node server.")
@config_options(ProtocolConfig)
@json_option
@dsn_option
def protocol(json_path: str | None, dsn: str | None, **given: Any) -> None:
    """The Durable Streams protocol: pts vs the reference server, side by side.

    From this process over real HTTP (keep-alive connections, the same client
    for both): sequential append latency p50/p99, append throughput with
    CONCURRENCY connections on as many streams, a catch-up read of a
    CATCHUP_MB stream, and SSE latencies (an append to its data event at a
    reader connected at the tail; a new connection to its first control
    event); on pts also its database's transactions and NOTIFYs per append
    of the throughput run (read after 10 s of quiet before and after it, as
    Postgres's statistics lag). pts runs `pts serve --no-auth` (PTS_WORKERS:
    1, 2 or both side by side) in a subprocess, on a fresh database each,
    created (and dropped) on the configured Postgres; the reference
    server (@durable-streams/server, Node.js) in another, started by the pts
    checkout's tests/reference_server.py, or the one at --reference-url. Without
    Node.js or the package, this fails and says how to install them (or use
    --servers pts).
    """
    if given["reference_url"] is not None and given["reference_store"] != "memory":
        raise click.BadParameter(
            "chooses the store of a started reference server, not of --reference-url",
            param_hint="--reference-store",
        )
    _run(ProtocolConfig, given, dsn, json_path)


@bench.command(short_help="N pts processes on one Postgres, through a SIGTERM and a SIGKILL.")
@config_options(ClusterConfig)
@json_option
@dsn_option
def cluster(json_path: str | None, dsn: str | None, **given: Any) -> None:
    """Many nodes: NODES pts processes on one database, through a rolling deploy.

    Starts NODES processes (loopback ports) serving the plugin on a fresh
    database created (and dropped) on the configured server. In each of three
    phases every live node drives STREAMS_PER_NODE answers, each watched over
    SSE by SUBSCRIBERS_PER_STREAM subscribers on the other nodes (reconnecting
    with Last-Event-ID to another node when theirs lets them go): steady;
    node 1 sent SIGTERM mid-answer (it drains, exits and is started again);
    node 2 killed with SIGKILL mid-answer (its answers end `timeout` after
    STALE_AFTER plus a sweep). Reports per phase: delivery delay p50/p99,
    missing and duplicated bytes against the persisted bodies, answers lost,
    the killed node's answers, reconnects, the nodes' Postgres connections and
    the notifications per second the database sent.
    """
    _run(ClusterConfig, given, dsn, json_path)


@bench.command(short_help="How the figures move as streams, a stream and the table grow.")
@config_options(GrowthConfig)
@json_option
@dsn_option
def growth(json_path: str | None, dsn: str | None, **given: Any) -> None:
    """Cost growth: append and read figures as the work grows, each level next to the first.

    Appends (sequential p50/p99, and from CONCURRENCY connections: appends/s)
    spread over STREAM_COUNTS streams; a stream's tail read and a whole
    catch-up as it grows to each of STREAM_APPENDS appends, open, then closed
    and compacted (n/a while the store has no compaction); the same tail
    read with TABLE_ROWS chunk rows in the table. Each part on a fresh
    database created (and dropped) on the configured Postgres, with its own
    `pts serve --no-auth` in a subprocess; the tables are filled by bulk SQL
    (sql/bench.sql), every figure is measured over HTTP.
    """
    _run(GrowthConfig, given, dsn, json_path)

"""The ``pts`` command line: ``demo``, ``migrate``, ``db``, ``serve``, ``tail``, ``write``,
``bench``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from pts.database import resolve_dsn, stop_embedded
from pts.errors import PTSError
from pts.http.loopback import is_loopback_host as is_loopback_host
from pts.http.serving import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_LIMIT_CONCURRENCY,
    DEFAULT_TIMEOUT_KEEP_ALIVE,
)
from pts.settings import Settings


def _settings(dsn: str | None) -> Settings:
    """The environment's settings, with ``--dsn`` taking precedence."""
    env = Settings.from_env()
    return env if dsn is None else dataclasses.replace(env, database_url=dsn)


_dsn_option = click.option(
    "--dsn",
    default=None,
    metavar="URL",
    help="Postgres URL (default: PTS_DATABASE_URL, DATABASE_URL, else the embedded Postgres).",
)


_json_option = click.option(
    "--json",
    "json_path",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Also write every figure as JSON to this file.",
)


_F = TypeVar("_F", bound=Callable[..., Any])


def _timeout_option(
    seconds: float, help: str = "Give up after this many seconds overall."
) -> Callable[[_F], _F]:
    """A benchmark's overall time limit (each has its own default)."""
    return click.option(
        "--timeout",
        default=seconds,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help=help,
    )


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what pts does.")
def main(verbose: bool) -> None:
    """pts: persistent text streaming on Postgres."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@_dsn_option
def migrate(dsn: str | None) -> None:
    """Create or update the pts schema (idempotent; safe to run concurrently)."""
    from pts.store.migrations import migrate as run_migrations

    try:
        url = resolve_dsn(_settings(dsn))
        applied = asyncio.run(run_migrations(url))
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        click.echo(f"applied {len(applied)} migration(s): {names}")
    else:
        click.echo("the database is up to date")


@main.command()
@_dsn_option
@click.option("--stop", is_flag=True, help="Stop the embedded Postgres instead.")
def db(dsn: str | None, stop: bool) -> None:
    """Print the database URL in use, starting the embedded Postgres if needed."""
    try:
        settings = _settings(dsn)
        if stop:
            if settings.database_url is not None:
                raise click.ClickException(
                    "--stop only stops the embedded Postgres; a URL is configured"
                )
            stopped = stop_embedded(settings.data_dir)
            click.echo(
                "stopped the embedded Postgres"
                if stopped
                else "the embedded Postgres is not running"
            )
            return
        click.echo(resolve_dsn(settings))
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc


def _check_port_free(host: str, port: int) -> None:
    """Fail with one line naming ``--port`` if ``host:port`` cannot be bound (before any banner).

    Binds and releases the address as uvicorn will (SO_REUSEADDR), so a port
    another server listens on is caught here, not after "running on" is printed.
    """
    import errno
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} is in use ({shown}; another pts serve or pts demo?): "
                "stop it, or pass --port N"
            ) from None
        raise click.ClickException(
            f"cannot listen on {shown}: {exc.strerror or exc} (pass --host or --port)"
        ) from None


def _warn_no_auth() -> None:
    """The one ``--no-auth`` warning: printed here; the workers are told not to repeat it."""
    from pts.http.app import NO_AUTH_WARNED_ENV

    click.echo(
        "WARNING: --no-auth: no access control, every request is allowed "
        "(for development and tests only)",
        err=True,
    )
    os.environ[NO_AUTH_WARNED_ENV] = "1"


def _positive_seconds(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    # FloatRange lets "nan" and "inf" through; neither is a timeout.
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds")
    return value


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Processes."
)
@_dsn_option
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
    help="uvicorn's log level.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    envvar="PTS_NO_AUTH",
    show_envvar=True,
    help="No access control: allow every request (loopback addresses only; for development).",
)
@click.option(
    "--long-poll-timeout",
    default=30.0,
    show_default=True,
    envvar="PTS_LONG_POLL_TIMEOUT",
    show_envvar=True,
    type=click.FloatRange(min=0, min_open=True),
    callback=_positive_seconds,
    metavar="SECONDS",
    help="How long a Durable Streams long-poll waits for data before answering 204.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="A browser origin allowed to use the server (repeatable; * for any). Default: any "
    "with access control; none but loopback pages, which get no CORS headers, with --no-auth. "
    "[env var: PTS_CORS_ORIGINS, comma or space separated]",
)
@click.option(
    "--header-timeout",
    default=DEFAULT_HEADER_TIMEOUT,
    show_default=True,
    envvar="PTS_HEADER_TIMEOUT",
    show_envvar=True,
    type=click.FloatRange(min=0, min_open=True),
    callback=_positive_seconds,
    metavar="SECONDS",
    help="Close a connection whose request head is not complete this long after it opened "
    "(or after the first byte of its next request).",
)
@click.option(
    "--timeout-keep-alive",
    default=DEFAULT_TIMEOUT_KEEP_ALIVE,
    show_default=True,
    envvar="PTS_TIMEOUT_KEEP_ALIVE",
    show_envvar=True,
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Close a keep-alive connection idle this long between requests.",
)
@click.option(
    "--limit-concurrency",
    default=DEFAULT_LIMIT_CONCURRENCY,
    show_default=True,
    envvar="PTS_LIMIT_CONCURRENCY",
    show_envvar=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Per worker: answer 503 to new requests while this many connections (SSE and "
    "long-polls included) or requests are open.",
)
def serve(
    host: str,
    port: int,
    workers: int,
    dsn: str | None,
    log_level: str,
    no_auth: bool,
    long_poll_timeout: float,
    cors_origins: tuple[str, ...],
    header_timeout: float,
    timeout_keep_alive: int,
    limit_concurrency: int,
) -> None:
    """Serve the pts HTTP API (/streams, /v1/stream, /healthz) with uvicorn.

    The database is resolved once here (starting the embedded Postgres if none
    is configured) and migrated before any worker starts; workers get its URL
    through PTS_DATABASE_URL, and the options below through PTS_NO_AUTH and
    PTS_LONG_POLL_TIMEOUT (read by pts.app:create_app). Requests need the
    header "Authorization: Bearer $PTS_ADMIN_TOKEN", unless --no-auth, which
    refuses any address but a loopback one (127.0.0.0/8, ::1, localhost) and,
    against DNS rebinding and cross-site requests, answers 403 to a request
    whose Host header is not a loopback one, or whose Origin is neither a
    loopback one nor a --cors-origin.
    """
    from pts.http.app import CORS_ORIGINS_ENV, cors_origins_from_env
    from pts.http.serving import (
        FILES_BESIDES_CONNECTIONS,
        header_timeout_protocol,
        raise_open_file_limit,
    )
    from pts.http.shutdown import run as run_server
    from pts.store.migrations import migrate as run_migrations

    if cors_origins:
        os.environ[CORS_ORIGINS_ENV] = " ".join(cors_origins)
    try:
        cors_origins_from_env()  # checked once here, not in every worker
    except PTSError as exc:
        raise click.UsageError(str(exc)) from exc

    if no_auth and not is_loopback_host(host):
        raise click.UsageError(
            f"--no-auth serves every request without access control, so it only binds "
            f"loopback addresses (127.0.0.1, ::1, localhost), not {host!r}"
        )
    _check_port_free(host, port)
    if no_auth:
        _warn_no_auth()
    try:
        url = resolve_dsn(_settings(dsn))
        asyncio.run(run_migrations(url))
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc
    os.environ["PTS_DATABASE_URL"] = url
    # Always set, so that the workers follow these options, not an older environment.
    os.environ["PTS_NO_AUTH"] = "1" if no_auth else "0"
    os.environ["PTS_LONG_POLL_TIMEOUT"] = repr(long_poll_timeout)
    # Room for every connection the limit admits, and for the pool and files besides.
    files = raise_open_file_limit(limit_concurrency + FILES_BESIDES_CONNECTIONS)
    if files < limit_concurrency + FILES_BESIDES_CONNECTIONS:
        click.echo(
            f"WARNING: the open-file limit is {files}: fewer connections than "
            f"--limit-concurrency {limit_concurrency} will be accepted (raise 'ulimit -n')",
            err=True,
        )
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"pts serving on http://{shown_host}:{port} ({workers} worker(s))")
    run_server(
        "pts.http.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        http=cast("type[asyncio.Protocol]", header_timeout_protocol(header_timeout)),
        timeout_keep_alive=timeout_keep_alive,
        limit_concurrency=limit_concurrency,
    )


@main.command()
@click.argument("stream", metavar="ID|PATH")
@click.option(
    "--offset", default=0, show_default=True, type=click.IntRange(min=0), help="Byte offset."
)
@_dsn_option
def tail(stream: str, offset: int, dsn: str | None) -> None:
    """Print a stream live from --offset, then its final status (on stderr).

    ID|PATH: a stream id (a UUID) or a Durable Streams protocol path (what
    follows /v1/stream/). Reads the database directly: no server needs to run.
    """
    from pts.core import PersistentTextStreaming
    from pts.shell import follow, parse_target

    def out(text: str) -> None:
        click.echo(text, nl=False)

    async def run() -> str:
        target = parse_target(stream)
        url = resolve_dsn(_settings(dsn))
        async with PersistentTextStreaming(dsn=url, sweeper=False) as pts:
            return await follow(pts, target, offset, out)

    try:
        final = asyncio.run(run())
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    click.echo("")
    click.echo(final, err=True)


@main.command()
@click.argument("stream", metavar="ID|PATH")
@_dsn_option
def write(stream: str, dsn: str | None) -> None:
    """Append standard input to a stream as it arrives, line by line; close it at EOF.

    ID: a pending stream (e.g. from POST /streams), which this drives: it is
    'streaming' while input lasts and 'done' at EOF (Ctrl+C: 'aborted').

    PATH: a Durable Streams protocol stream, created (text/plain) if missing,
    closed at EOF (Ctrl+C leaves it open).

    Writes to the database directly, so every server on it and every `pts
    tail` sees each line as it is persisted.
    """
    from pts.core import PersistentTextStreaming
    from pts.shell import parse_target, read_lines, write_lines

    async def run() -> str:
        target = parse_target(stream)
        url = resolve_dsn(_settings(dsn))
        async with PersistentTextStreaming(dsn=url, sweeper=False) as pts:
            info = await write_lines(pts, target, read_lines(sys.stdin.fileno()))
        reason = info.abort_reason or info.error
        return f"[{info.status}{': ' + reason if reason else ''}, {info.size} bytes]"

    try:
        final = asyncio.run(run())
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    click.echo(final, err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@_dsn_option
def demo(host: str, port: int, dsn: str | None) -> None:
    """Run the demo chat (example_chat/): both delivery paths side by side.

    Zero configuration: the embedded Postgres (unless a URL is configured),
    migrated, and the offline model. PTS_DEMO_MODEL=openai:<model> talks to an
    OpenAI-compatible endpoint instead (OPENAI_BASE_URL, OPENAI_API_KEY);
    PTS_DEMO_TOKENS_PER_SECOND sets the offline model's pace.
    """
    try:
        from example_chat.server import run
    except ImportError as exc:  # an installed wheel has no example_chat/
        raise click.ClickException("the demo runs from a checkout of the pts repository") from exc
    _check_port_free(host, port)
    try:
        run(host=host, port=port, settings=_settings(dsn), echo=click.echo)
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc


def _progress(message: str) -> None:
    """A benchmark's progress line, on stderr (the figures go to stdout)."""
    click.echo(message, err=True)


def _report(table: str, result: dict[str, Any], json_path: str | None) -> None:
    """Print a benchmark's table; with ``--json``, also write its figures there."""
    from pts.bench.common import write_json

    click.echo(table)
    if json_path is not None:
        write_json(json_path, result)
        click.echo(f"figures written to {json_path}")


@main.group()
def bench() -> None:
    """Benchmarks: figures to read, measured over real HTTP (never a test)."""


@bench.command(short_help="pts.stream() vs a bare streaming response: latency, writes, load.")
@click.option(
    "--tokens",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Tokens per answer.",
)
@click.option(
    "--sentences",
    default=40,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sentences the tokens form (at most --tokens).",
)
@click.option(
    "--requests",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sequential requests of each kind (bare, pts), interleaved.",
)
@click.option(
    "--naive-requests",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Sequential naive answers (a commit per token), spread over the run.",
)
@click.option(
    "--paced-requests",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Sequential pts answers at LLM pace, for writes per answer (0: none).",
)
@click.option(
    "--pace",
    default=0.002,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Seconds the paced generator sleeps between tokens.",
)
@click.option(
    "--streams",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Concurrent streams per batch.",
)
@click.option(
    "--rounds",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Concurrent batches of each kind, alternating.",
)
@click.option(
    "--warmup",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Unmeasured sequential rounds first.",
)
@_timeout_option(300.0)
@_json_option
@_dsn_option
def driven(
    tokens: int,
    sentences: int,
    requests: int,
    naive_requests: int,
    paced_requests: int,
    pace: float,
    streams: int,
    rounds: int,
    warmup: int,
    timeout: float,
    json_path: str | None,
    dsn: str | None,
) -> None:
    """Driving a stream vs a bare streaming response, and writes per answer.

    Serves the same generator (TOKENS tokens forming SENTENCES sentences, no
    sleeps) through a bare Litestar Stream and through pts.stream() from a
    uvicorn subprocess, and reports time to first and last byte, commits and
    rows per answer (pts vs a commit per token; pts also with PACED_REQUESTS
    answers whose generator sleeps PACE seconds between tokens), and
    throughput with STREAMS concurrent streams. Runs in a fresh database
    created (and dropped) on the configured server.
    """
    from pts.bench.common import BenchError
    from pts.bench.driven import DrivenConfig, format_report, run_driven

    if sentences > tokens:
        raise click.BadParameter("must not exceed --tokens", param_hint="--sentences")
    if naive_requests > requests:
        raise click.BadParameter("must not exceed --requests", param_hint="--naive-requests")
    try:
        url = resolve_dsn(_settings(dsn))
        config = DrivenConfig(
            dsn=url,
            tokens=tokens,
            sentences=sentences,
            requests=requests,
            naive_requests=naive_requests,
            paced_requests=paced_requests,
            pace=pace,
            streams=streams,
            rounds=rounds,
            warmup=warmup,
            timeout=timeout,
        )
        result = run_driven(config, progress=_progress)
    except (PTSError, BenchError) as exc:
        raise click.ClickException(str(exc)) from exc
    _report(format_report(result), result, json_path)


@bench.command(short_help="Many SSE subscribers per stream: delay, loss, connections, reads.")
@click.option(
    "--streams",
    default=10,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Streams produced at once, in the server process.",
)
@click.option(
    "--subscribers",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="SSE subscribers of the main run, spread evenly over the streams.",
)
@click.option(
    "--sentences",
    default=40,
    show_default=True,
    type=click.IntRange(1, 4000),
    help="Sentences per stream.",
)
@click.option(
    "--tokens-per-sentence",
    default=25,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Tokens per sentence (~5 bytes each).",
)
@click.option(
    "--pace",
    default=0.02,
    show_default=True,
    type=click.FloatRange(0, 10),
    help="Seconds between two tokens of a stream (each gap 0.5-1.5x this).",
)
@click.option(
    "--max-subscribers",
    default=16_000,
    show_default=True,
    type=click.IntRange(min=0),
    help="Scale up to this many subscribers; <= --subscribers: no scaling.",
)
@_timeout_option(900.0, "Give up after this many seconds overall (scaling stops in time).")
@_json_option
@_dsn_option
def fanout(
    streams: int,
    subscribers: int,
    sentences: int,
    tokens_per_sentence: int,
    pace: float,
    max_subscribers: int,
    timeout: float,
    json_path: str | None,
    dsn: str | None,
) -> None:
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
    from pts.bench.common import BenchError
    from pts.bench.fanout import FanoutConfig, format_report, run_fanout

    if subscribers < streams:
        raise click.BadParameter("must be at least --streams", param_hint="--subscribers")
    try:
        url = resolve_dsn(_settings(dsn))
        config = FanoutConfig(
            dsn=url,
            streams=streams,
            subscribers=subscribers,
            sentences=sentences,
            tokens_per_sentence=tokens_per_sentence,
            pace=pace,
            max_subscribers=max_subscribers,
            timeout=timeout,
        )
        result = run_fanout(config, progress=_progress)
    except (PTSError, BenchError) as exc:
        raise click.ClickException(str(exc)) from exc
    _report(format_report(result), result, json_path)


@bench.command(short_help="Durable Streams over HTTP: pts vs the reference Node server.")
@click.option(
    "--servers",
    default="both",
    show_default=True,
    type=click.Choice(["both", "pts", "reference"]),
    help="Which servers to measure.",
)
@click.option(
    "--reference-store",
    default="memory",
    show_default=True,
    type=click.Choice(["memory", "file", "both"]),
    help="The reference server's store: in memory (its default) or files (fdatasync per append).",
)
@click.option(
    "--reference-dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="A directory with node_modules/@durable-streams/server "
    "(default: the checkout's tests/, after `npm ci --prefix tests`).",
)
@click.option(
    "--appends",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Sequential appends measured.",
)
@click.option(
    "--warmup",
    default=50,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="Unmeasured sequential appends first.",
)
@click.option(
    "--concurrency",
    default=75,
    show_default=True,
    type=click.IntRange(1, 2000),
    help="Connections (and streams) appending at once.",
)
@click.option(
    "--concurrent-appends",
    default=100,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Appends per connection in the throughput run.",
)
@click.option(
    "--catchup-mb",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.001, 1000),
    help="Size of the stream read from the start (MB = 10^6 bytes).",
)
@click.option(
    "--catchup-reads",
    default=10,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Times it is read.",
)
@click.option(
    "--sse-events",
    default=200,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Appends timed to their SSE data event.",
)
@click.option(
    "--sse-connects",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="SSE connections timed to their first control event.",
)
@click.option(
    "--payload",
    default=100,
    show_default=True,
    type=click.IntRange(24, 1_000_000),
    help="Bytes per append.",
)
@_timeout_option(600.0)
@_json_option
@_dsn_option
def protocol(
    servers: str,
    reference_store: str,
    reference_dir: str | None,
    appends: int,
    warmup: int,
    concurrency: int,
    concurrent_appends: int,
    catchup_mb: float,
    catchup_reads: int,
    sse_events: int,
    sse_connects: int,
    payload: int,
    timeout: float,
    json_path: str | None,
    dsn: str | None,
) -> None:
    """The Durable Streams protocol: pts vs the reference server, side by side.

    From this process over real HTTP (keep-alive connections, the same client
    for both): sequential append latency p50/p99, append throughput with
    CONCURRENCY connections on as many streams, a catch-up read of a
    CATCHUP_MB stream, and SSE latencies (an append to its data event at a
    reader connected at the tail; a new connection to its first control
    event). pts runs as `pts serve --no-auth` would, in a subprocess on a fresh
    database created (and dropped) on the configured Postgres; the reference
    server (@durable-streams/server, Node.js) in another. Without Node.js or
    the package, this fails and says how to install them (or use --servers pts).
    """
    from pts.bench.common import BenchError
    from pts.bench.protocol import ProtocolConfig, format_report, run_protocol

    try:
        url = resolve_dsn(_settings(dsn)) if servers in ("both", "pts") else None
        config = ProtocolConfig(
            dsn=url,
            servers=servers,
            reference_store=reference_store,
            reference_dir=reference_dir,
            appends=appends,
            warmup=warmup,
            concurrency=concurrency,
            concurrent_appends=concurrent_appends,
            catchup_bytes=round(catchup_mb * 1_000_000),
            catchup_reads=catchup_reads,
            sse_events=sse_events,
            sse_connects=sse_connects,
            payload=payload,
            timeout=timeout,
        )
        result = run_protocol(config, progress=_progress)
    except (PTSError, BenchError) as exc:
        raise click.ClickException(str(exc)) from exc
    _report(format_report(result), result, json_path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``pts serve``: the pts HTTP API under uvicorn, its options and the checks before it starts."""

from __future__ import annotations

import asyncio
import math
import os
from typing import cast

import click

from pts.cli_options import check_port_free, dsn_option, settings_for
from pts.database import resolve_dsn
from pts.errors import PTSError
from pts.http.loopback import is_loopback_host
from pts.http.serving import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_LIMIT_CONCURRENCY,
    DEFAULT_TIMEOUT_KEEP_ALIVE,
)

__all__ = ["serve"]


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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Processes."
)
@dsn_option
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
@click.option(
    "--metrics/--no-metrics",
    default=None,
    envvar="PTS_METRICS",
    show_envvar=True,
    help="Serve GET /metrics (Prometheus, no access check: keep it off the public network). "
    "Default: on when prometheus-client is installed (pip install 'pts[metrics]').",
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
    metrics: bool | None,
) -> None:
    """Serve the pts HTTP API (/streams, /v1/stream, /healthz, /metrics) with uvicorn.

    The database is resolved once here (starting the embedded Postgres if none
    is configured) and migrated before any worker starts; workers get its URL
    through PTS_DATABASE_URL, and the options below through PTS_NO_AUTH and
    PTS_LONG_POLL_TIMEOUT (read by pts.http.app:create_app). Requests need the
    header "Authorization: Bearer $PTS_ADMIN_TOKEN", unless --no-auth, which
    refuses any address but a loopback one (127.0.0.0/8, ::1, localhost) and,
    against DNS rebinding and cross-site requests, answers 403 to a request
    whose Host header is not a loopback one, or whose Origin is neither a
    loopback one nor a --cors-origin.
    """
    from pts.http import app as served
    from pts.http.allocator import tune_allocator
    from pts.http.serving import (
        FILES_BESIDES_CONNECTIONS,
        header_timeout_protocol,
        raise_open_file_limit,
    )
    from pts.http.shutdown import run as run_server
    from pts.store.migrations import migrate as run_migrations

    if cors_origins:
        os.environ[served.CORS_ORIGINS_ENV] = " ".join(cors_origins)
    if metrics is not None:  # else unset (click read it): on when prometheus-client is there
        os.environ[served.METRICS_ENV] = "1" if metrics else "0"
    try:
        served.cors_origins_from_env()  # checked once here, not in every worker
        served.metrics_from_env()
        served.gc_threshold_from_env()
    except PTSError as exc:
        raise click.UsageError(str(exc)) from exc

    if no_auth and not is_loopback_host(host):
        raise click.UsageError(
            f"--no-auth serves every request without access control, so it only binds "
            f"loopback addresses (127.0.0.1, ::1, localhost), not {host!r}"
        )
    check_port_free(host, port)
    if no_auth:
        _warn_no_auth()
    try:
        url = resolve_dsn(settings_for(dsn))
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
    tune_allocator()  # megabyte read buffers reuse memory: see pts.http.allocator
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"pts serving on http://{shown_host}:{port} ({workers} worker(s))")
    run_server(
        # create_app's, with the protocol's requests past Litestar's layers
        "pts.http.fast_path:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        http=cast("type[asyncio.Protocol]", header_timeout_protocol(header_timeout)),
        timeout_keep_alive=timeout_keep_alive,
        limit_concurrency=limit_concurrency,
    )

"""The ``pts`` command line: ``demo``, ``migrate``, ``db``, ``serve``, ``tail``, ``write``,
``prune``, ``bench``."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from pts.bench.commands import bench
from pts.cli_options import check_port_free, dsn_option, settings_for
from pts.cli_prune import prune
from pts.cli_serve import serve
from pts.database import resolve_dsn, stop_embedded
from pts.errors import PTSError
from pts.http.loopback import is_loopback_host as is_loopback_host


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what pts does.")
def main(verbose: bool) -> None:
    """pts: persistent text streaming on Postgres."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@dsn_option
def migrate(dsn: str | None) -> None:
    """Create or update the pts schema (idempotent; safe to run concurrently)."""
    from pts.store.migrations import migrate as run_migrations

    try:
        url = resolve_dsn(settings_for(dsn))
        applied = asyncio.run(run_migrations(url))
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        click.echo(f"applied {len(applied)} migration(s): {names}")
    else:
        click.echo("the database is up to date")


@main.command()
@dsn_option
@click.option("--stop", is_flag=True, help="Stop the embedded Postgres instead.")
def db(dsn: str | None, stop: bool) -> None:
    """Print the database URL in use, starting the embedded Postgres if needed."""
    try:
        settings = settings_for(dsn)
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


@main.command()
@click.argument("stream", metavar="ID|PATH")
@click.option(
    "--offset", default=0, show_default=True, type=click.IntRange(min=0), help="Byte offset."
)
@dsn_option
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
        url = resolve_dsn(settings_for(dsn))
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
@dsn_option
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
        url = resolve_dsn(settings_for(dsn))
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
@dsn_option
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
    check_port_free(host, port)
    try:
        run(host=host, port=port, settings=settings_for(dsn), echo=click.echo)
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc


main.add_command(serve)
main.add_command(prune)
main.add_command(bench)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

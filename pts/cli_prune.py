"""``pts prune``: delete finished streams older than a duration, in batches.

Each batch is one short transaction (:meth:`~pts.store.base.Store.prune`:
``FOR UPDATE SKIP LOCKED``, forks kept readable by soft deletes), so it is safe
to run while servers serve, from cron.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import click

from pts.cli_options import dsn_option, settings_for
from pts.database import resolve_dsn
from pts.errors import PTSError
from pts.settings import Driver

__all__ = ["parse_duration", "prune"]

_DURATION = re.compile(r"([0-9]{1,9})([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``: a whole number of days, hours, minutes or
    seconds, more than 0. Anything else is a ValueError saying what is accepted."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and one unit, "
            "d, h, m or s (7d, 12h, 30m, 90s)"
        )
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds == 0:
        raise ValueError(f"{text!r} is no duration: it must be more than 0")
    return timedelta(seconds=seconds)


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option(
    "--finished-before",
    "age",
    required=True,
    metavar="DURATION",
    callback=_duration,
    help="Delete the streams that finished longer ago than this: 7d, 12h, 30m or 90s.",
)
@click.option(
    "--batch-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Streams per batch: each batch is one short transaction.",
)
@click.option("--dry-run", is_flag=True, help="Print how many streams would go; delete none.")
@dsn_option
def prune(age: timedelta, batch_size: int, dry_run: bool, dsn: str | None) -> None:
    """Delete finished streams (done, error, timeout, aborted) and their text, by age.

    Prints a line per batch ("deleted N (total T)") and a last line with the
    total. Safe while serving: a batch skips the streams other transactions
    hold, and a stream whose bytes a live fork still reads is soft-deleted
    (the fork keeps reading). Live and pending streams are never touched.
    """
    from pts.store import create_store
    from pts.store.migrations import check_schema

    try:
        cutoff = datetime.now(UTC) - age
    except OverflowError:
        raise click.BadParameter(
            "it reaches before year 1", param_hint="'--finished-before'"
        ) from None

    async def run(url: str, driver: Driver) -> None:
        store = create_store(url, driver, min_size=1, max_size=1)
        await store.open()
        try:
            await check_schema(store)
            shown = f"{cutoff:%Y-%m-%d %H:%M:%S} UTC"
            if dry_run:
                count = await store.count_prunable(cutoff)
                click.echo(f"dry run: would delete {count} stream(s) finished before {shown}")
                return
            total = 0
            while deleted := await store.prune(cutoff, batch_size):
                total += deleted
                click.echo(f"deleted {deleted} (total {total})")
            click.echo(f"pruned {total} stream(s) finished before {shown}")
        finally:
            await store.close()

    try:
        settings = settings_for(dsn)
        asyncio.run(run(resolve_dsn(settings), settings.driver))
    except PTSError as exc:
        raise click.ClickException(str(exc)) from exc

"""``pts migrate``: bring a database's ``pts`` schema up to date.

A fresh database gets ``sql/schema.sql`` in one go, and every migration is
recorded as applied; a database that has some migrations gets the missing ones
in order. Everything runs in one transaction under an advisory lock, so
concurrent runs queue up and a failed run leaves the database as it was.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from pts.errors import SchemaNotMigrated, StoreUnavailable
from pts.resources import sql_dir
from pts.store.queries import queries

if TYPE_CHECKING:
    from pts.store.runner import QueryRunner

logger = logging.getLogger("pts.migrations")

_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered file in ``sql/migrations/``."""

    version: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def list_migrations(directory: Path | None = None) -> list[Migration]:
    """Every migration file, in version order."""
    directory = sql_dir() / "migrations" if directory is None else directory
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a version in {directory}")
    return found


async def migrate(dsn: str, *, use_schema_file: bool = True) -> list[Migration]:
    """Apply what the database lacks; return the migrations newly recorded.

    With ``use_schema_file=False`` a fresh database is built by replaying every
    migration instead of ``schema.sql`` (the test that both agree uses this).
    Safe to run any number of times, from any number of processes at once.
    """
    sql = queries()
    migrations = list_migrations()
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresConnectionError) as exc:
        raise StoreUnavailable(f"cannot connect to the database: {exc}") from exc
    try:
        async with conn.transaction():
            await conn.execute(sql["migrations_lock"])
            state = await conn.fetchrow(sql["migrations_state"])
            assert state is not None
            has_table, has_streams = state["has_migrations_table"], state["has_streams_table"]
            if has_streams and not has_table:
                raise RuntimeError(
                    "the database has pts tables but no pts.schema_migrations: "
                    "it was not built by `pts migrate`; refusing to touch it"
                )
            await conn.execute(sql["create_migrations_table"])
            if not has_streams and use_schema_file:
                logger.info("fresh database: applying schema.sql")
                await conn.execute((sql_dir() / "schema.sql").read_text(encoding="utf-8"))
                pending = migrations
            else:
                applied = {r["version"] for r in await conn.fetch(sql["applied_migrations"])}
                pending = [m for m in migrations if m.version not in applied]
                for migration in pending:
                    logger.info("applying migration %04d_%s", migration.version, migration.name)
                    await conn.execute(migration.sql())
            for migration in pending:
                await conn.execute(sql["record_migration"], migration.version, migration.name)
        return pending
    finally:
        await conn.close()


MIGRATE_HINT = (
    "run `uv run pts migrate` (with --dsn URL, or PTS_DATABASE_URL, naming this database), "
    "or let pts migrate at startup: PTSPlugin(..., migrate=True)"
)
"""What a :class:`~pts.errors.SchemaNotMigrated` message tells the user to do."""


async def missing_migrations(store: QueryRunner) -> list[Migration]:
    """The migrations this code has that the store's database lacks (all, if it has no schema).

    Two cheap queries on the store's own pool, run when pts opens.
    """
    applied = await store.migration_versions()
    known = list_migrations()
    if applied is None:
        return known
    return [m for m in known if m.version not in applied]


async def check_schema(store: QueryRunner) -> None:
    """Raise SchemaNotMigrated (one line: what to run) unless the schema is up to date.

    A database with migrations this code does not know (a newer release ran
    ``pts migrate`` first, as in a rolling deploy) passes.
    """
    missing = await missing_migrations(store)
    if not missing:
        return
    if len(missing) == len(list_migrations()):
        raise SchemaNotMigrated(f"the database has no pts schema: {MIGRATE_HINT}")
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
    raise SchemaNotMigrated(
        f"the database's pts schema is older than this code (missing {names}): {MIGRATE_HINT}"
    )

"""Migrations: idempotent, concurrent-safe, and the full schema equals every migration replayed.

Also the named queries of sql/queries.sql: fragments substituted, the stream columns listed once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

import asyncpg
import pytest

from pts.models import StreamInfo
from pts.resources import sql_dir
from pts.settings import Driver
from pts.store import create_store
from pts.store.migrations import list_migrations, migrate
from pts.store.queries import parse_queries, queries
from tests.support.postgres import DatabaseFactory

# What makes up the pts schema, each as (kind, name, definition) rows.
CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name,
               format('%s %s null=%s default=%s', data_type, udt_name, is_nullable, column_default)
          FROM information_schema.columns WHERE table_schema = 'pts'""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'pts'::regnamespace""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'pts'""",
    "views": """
        SELECT 'view', viewname, definition FROM pg_views WHERE schemaname = 'pts'""",
    "functions": """
        SELECT 'function', p.proname, pg_get_functiondef(p.oid)
          FROM pg_proc p WHERE p.pronamespace = 'pts'::regnamespace""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
          FROM pg_trigger WHERE NOT tgisinternal
           AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'pts'::regnamespace)""",
}


async def catalog(url: str) -> dict[str, set[tuple[str, str, str]]]:
    conn = await asyncpg.connect(url)
    try:
        return {
            kind: {(r[0], r[1], r[2]) for r in await conn.fetch(query)}
            for kind, query in CATALOG_QUERIES.items()
        }
    finally:
        await conn.close()


async def applied_versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [
            r[0] for r in await conn.fetch("SELECT version FROM pts.schema_migrations ORDER BY 1")
        ]
    finally:
        await conn.close()


async def test_schema_file_equals_all_migrations(databases: DatabaseFactory) -> None:
    from_schema = databases.create_empty()
    from_migrations = databases.create_empty()
    try:
        await migrate(from_schema)
        await migrate(from_migrations, use_schema_file=False)
        schema_catalog = await catalog(from_schema)
        migrations_catalog = await catalog(from_migrations)
        assert schema_catalog["columns"], "the catalog query found no pts tables"
        for kind in CATALOG_QUERIES:
            assert schema_catalog[kind] == migrations_catalog[kind], kind
        everything = [m.version for m in list_migrations()]
        assert await applied_versions(from_schema) == everything
        assert await applied_versions(from_migrations) == everything
    finally:
        databases.drop(from_schema)
        databases.drop(from_migrations)


async def test_migrate_is_idempotent(databases: DatabaseFactory) -> None:
    url = databases.create_empty()
    try:
        first = await migrate(url)
        assert [m.version for m in first] == [m.version for m in list_migrations()]
        assert await migrate(url) == []
        assert await migrate(url) == []
    finally:
        databases.drop(url)


async def test_concurrent_migrate_runs_apply_once(databases: DatabaseFactory) -> None:
    url = databases.create_empty()
    try:
        results = await asyncio.gather(*(migrate(url) for _ in range(4)))
        assert sorted(len(r) for r in results) == [0, 0, 0, len(list_migrations())]
    finally:
        databases.drop(url)


async def test_migrations_are_numbered_and_named() -> None:
    migrations = list_migrations()
    assert migrations, "sql/migrations/ holds no migration"
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrations[0].version == 1


async def test_migration_3_repairs_rows_python_cannot_read(databases: DatabaseFactory) -> None:
    # Rows older code let in: an expiry past year 9999 and a TTL whose renewal passes it.
    url = databases.create_empty()
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE SCHEMA pts; CREATE TABLE pts.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for m in list_migrations()[:2]:
                await conn.execute(m.sql())
                await conn.execute(
                    "INSERT INTO pts.schema_migrations VALUES ($1, $2)", m.version, m.name
                )
            await conn.execute(
                "INSERT INTO pts.streams (path, expires_at) VALUES ('far', '12000-01-01Z');"
                "INSERT INTO pts.streams (path, ttl_seconds, expires_at)"
                " VALUES ('ttl', 1000000000000, now() + interval '1 day')"
            )
        finally:
            await conn.close()
        later = [m.version for m in list_migrations()[2:]]  # 3 and whatever came after
        assert [m.version for m in await migrate(url)] == later
        store = create_store(url, "asyncpg")
        await store.open()
        try:
            for path in ("far", "ttl"):
                found = await store.ds_lookup(path, touch=True)
                assert found is not None
                assert found.stream.expires_at is not None
                assert await store.ds_delete(found.stream.id) == "deleted"
        finally:
            await store.close()
    finally:
        databases.drop(url)


async def test_migration_versions_are_what_migrate_recorded(
    databases: DatabaseFactory, driver: Driver
) -> None:
    url = databases.create_empty()
    try:
        store = create_store(url, driver)  # the `driver` fixture: asyncpg, psycopg
        await store.open()
        try:
            assert await store.migration_versions() is None  # no pts schema at all
            await migrate(url)
            assert await store.migration_versions() == {m.version for m in list_migrations()}
        finally:
            await store.close()
    finally:
        databases.drop(url)


def test_a_fragment_is_substituted_into_the_queries_that_name_it() -> None:
    text = (
        "-- fragment: cols\nid, size\n"
        "-- name: one\nSELECT {cols} FROM t WHERE id = $1;\n"
        "-- name: two\nUPDATE t SET size = 0 RETURNING {cols};\n"
    )
    assert parse_queries(text) == {
        "one": "SELECT id, size FROM t WHERE id = $1;",
        "two": "UPDATE t SET size = 0 RETURNING id, size;",
    }
    with pytest.raises(ValueError, match="names no fragment"):
        parse_queries("-- name: one\nSELECT {colz} FROM t;\n")
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- fragment: one\nid\n-- name: one\nSELECT 1;\n")


def test_the_stream_columns_are_listed_once_and_are_the_stream_info_fields() -> None:
    text = (sql_dir() / "queries.sql").read_text(encoding="utf-8")
    fragment = re.search(r"^-- fragment: stream_columns\n(.*?)\n\n", text, re.M | re.S)
    assert fragment is not None
    columns = [c.split()[-1] for c in fragment[1].split(",")]  # `metadata::text AS metadata`
    assert sorted(columns) == sorted(f.name for f in dataclasses.fields(StreamInfo))
    assert text.count("fork_sub_offset, deleted_at") == 1
    loaded = queries()
    assert "stream_columns" not in loaded
    assert all("{" not in sql for sql in loaded.values())
    assert sum("fork_sub_offset, deleted_at" in sql for sql in loaded.values()) == 10

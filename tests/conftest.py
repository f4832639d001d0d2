"""Shared fixtures: a Postgres server per session, a fresh database per test, both drivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from pts.settings import DRIVERS, Driver
from pts.store import SQLStore, create_store
from tests.postgres import DatabaseFactory, postgres_server


@pytest.fixture(scope="session")
def databases() -> Iterator[DatabaseFactory]:
    with postgres_server() as url:
        factory = DatabaseFactory(url)
        try:
            yield factory
        finally:
            factory.close()


@pytest.fixture
def db_url(databases: DatabaseFactory) -> Iterator[str]:
    """The URL of a fresh, migrated database of this test's own."""
    url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    """Each test that uses it runs once per driver: asyncpg and psycopg."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def store(db_url: str, driver: Driver) -> AsyncIterator[SQLStore]:
    """An open store on this test's database, once per driver."""
    s = create_store(db_url, driver, min_size=1, max_size=5)
    await s.open()
    try:
        yield s
    finally:
        await s.close()

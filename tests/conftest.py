"""Shared fixtures: a Postgres server per session, a fresh database per test, both drivers.

A test that takes ``store`` runs on the asyncpg and psycopg stores and on the
in-memory store (``[memory]``), unless it also takes ``db_url`` (it looks at
the database itself) or is marked ``postgres_only`` (it needs what only
Postgres has, such as the Durable Streams operations the memory store does
not serve; the mark may sit on one ``pytest.param``): those run on the two
database drivers only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from pts.settings import DRIVERS
from pts.store import Store, create_store
from pts.testing import MemoryStore
from tests.support.postgres import DatabaseFactory, postgres_server

STORES = (*DRIVERS, "memory")
"""What the ``driver`` fixture takes for a test of the ``store`` fixture."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgres_only(reason): a store test that needs Postgres; not run on the memory store",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver" not in metafunc.fixturenames:
        return
    memory = (
        "store" in metafunc.fixturenames
        and "db_url" not in metafunc.fixturenames
        and metafunc.definition.get_closest_marker("postgres_only") is None
    )
    metafunc.parametrize("driver", STORES if memory else DRIVERS, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A `postgres_only` mark on one parameter (pytest.param(..., marks=...)) is only
    # visible on the collected item: drop its [memory] runs here.
    def on_memory(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        return callspec is not None and callspec.params.get("driver") == "memory"

    dropped = [i for i in items if on_memory(i) and i.get_closest_marker("postgres_only")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        kept = set(map(id, dropped))
        items[:] = [i for i in items if id(i) not in kept]


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


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> str:
    """Each test that uses it runs once per driver: asyncpg and psycopg (and, through
    the ``store`` fixture, ``memory``: see the module's docstring)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def store_url(request: pytest.FixtureRequest, driver: str) -> str | None:
    """The database of a ``store`` test, or None for the memory store.

    Asked for here, not in a signature, so that a memory run starts no Postgres
    (and in a plain fixture: the database factory runs its own event loop).
    """
    if driver == "memory":
        return None
    url: str = request.getfixturevalue("db_url")
    return url


@pytest.fixture
async def store(store_url: str | None, driver: str) -> AsyncIterator[Store]:
    """An open store, once per driver: on this test's database, or in memory."""
    if store_url is None:
        s: Store = MemoryStore()
    else:
        s = create_store(store_url, driver, min_size=1, max_size=5)  # type: ignore[arg-type]
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to this test's database (for SQL a test runs itself)."""
    connection = await asyncpg.connect(db_url)
    try:
        yield connection
    finally:
        await connection.close()

"""``SyncStore()`` finds its database as the rest of pts does, at once (it used to hang 30 s)."""

from __future__ import annotations

import pytest

from pts import StreamStatus, SyncStore
from pts.errors import SchemaNotMigrated
from tests.support.postgres import DatabaseFactory


@pytest.mark.timeout(20)  # a hang guard: the pool used to wait 30 s for libpq's defaults
@pytest.mark.parametrize("variable", ["PTS_DATABASE_URL", "DATABASE_URL"])
def test_no_dsn_reads_the_environment(
    db_url: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.delenv("PTS_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv(variable, db_url)
    with SyncStore() as store:
        info = store.create_stream(status=StreamStatus.STREAMING)
        size = store.append(info.id, b"Hello. ", offset=0)
        store.append(info.id, b"", offset=size, finish=StreamStatus.DONE)
    with SyncStore(None) as store:
        assert store.read(info.id).data == b"Hello. "


@pytest.mark.timeout(20)
def test_an_unmigrated_database_is_refused_at_once(databases: DatabaseFactory) -> None:
    url = databases.create_empty()
    try:
        with pytest.raises(SchemaNotMigrated, match="run `uv run pts migrate`"):
            SyncStore(url)
    finally:
        databases.drop(url)

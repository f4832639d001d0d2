"""The synchronous facade, as a producer in sync code (a Celery task, a script) would use it."""

from __future__ import annotations

import inspect
import threading

import pytest

from pts import OffsetConflict, StreamClosed, StreamNotFound, StreamStatus, SyncStore
from pts.models import CreateOutcome
from pts.settings import Driver
from pts.store import Store


def test_sync_producer_writes_and_finishes(db_url: str, driver: Driver) -> None:
    with SyncStore(db_url, driver=driver) as store:
        info = store.create_stream(status=StreamStatus.STREAMING, metadata={"job": "celery"})
        size = 0
        for sentence in ("Première phrase. ", "第二句。", " Third 🚀."):
            size = store.append(info.id, sentence.encode(), offset=size)
        store.append(info.id, b"", offset=size, finish=StreamStatus.DONE)
        read = store.read(info.id)
        assert read.data.decode() == "Première phrase. 第二句。 Third 🚀."
        assert read.status is StreamStatus.DONE
        assert store.get_stream(info.id).metadata == {"job": "celery"}
        with pytest.raises(StreamClosed):
            store.append(info.id, b"late", offset=size)
        with pytest.raises(OffsetConflict):
            store.append(store.create_stream().id, b"x", offset=5)
        store.delete_stream(info.id)
        with pytest.raises(StreamNotFound):
            store.get_stream(info.id)


def test_sync_store_is_shared_between_threads(db_url: str) -> None:
    with SyncStore(db_url) as store:
        info = store.create_stream(status=StreamStatus.STREAMING)
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            # Each thread retries at the size it sees until its append lands.
            for _ in range(100):
                offset = store.get_stream(info.id).size
                try:
                    store.append(info.id, f"[{n}]".encode(), offset=offset)
                    return
                except OffsetConflict:
                    continue
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        text = store.read(info.id).data.decode()
        assert sorted(text.replace("]", "] ").split()) == [f"[{n}]" for n in range(5)]


def test_sync_store_close_is_idempotent(db_url: str) -> None:
    store = SyncStore(db_url)
    store.close()
    store.close()


def test_sync_store_has_every_store_operation_with_its_signature() -> None:
    # Derived from the Store declaration: an operation added there and not here fails.
    operations = sorted(
        name
        for name, member in vars(Store).items()
        if inspect.iscoroutinefunction(member) and name not in ("open", "close")
    )
    assert "append" in operations
    assert "ds_append" in operations
    for name in operations:
        declared = getattr(Store, name)
        blocking = getattr(SyncStore, name, None)
        assert blocking is not None, f"SyncStore has no {name}"
        assert not inspect.iscoroutinefunction(blocking)
        assert not getattr(blocking, "__isabstractmethod__", False), name
        assert inspect.signature(blocking) == inspect.signature(declared), name
        assert blocking.__doc__ == declared.__doc__, name


def test_sync_store_runs_the_sweeps_and_the_durable_operations(db_url: str) -> None:
    with SyncStore(db_url) as store:
        outcome, stream_id = store.ds_create("sync/1", content_type="text/plain", data=b"Hi.")
        assert outcome is CreateOutcome.CREATED
        assert stream_id is not None
        assert store.ds_append("sync/1", b" Again.", media_type="text/plain").size == 10
        found = store.ds_lookup("sync/1")
        assert found is not None
        assert found.stream.id == stream_id
        assert found.stream.size == 10
        assert store.find_stale(3600) == store.timeout_stale(3600) == []
        assert store.timeout_pending(3600) == []
        assert store.read_parts(stream_id).parts == (b"Hi.", b" Again.")
        assert store.ds_delete(stream_id) == "deleted"
        assert store.collect_garbage() == 0
        assert store.ds_lookup(None, stream_id=stream_id) is None

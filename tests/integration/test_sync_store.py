"""The synchronous facade, as a producer in sync code (a Celery task, a script) would use it."""

from __future__ import annotations

import threading

import pytest

from pts import OffsetConflict, StreamClosed, StreamNotFound, StreamStatus, SyncStore
from pts.settings import Driver


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

"""FlushPolicy and Flusher: sentence-sized writes beside delivery, through outages."""

from __future__ import annotations

import asyncio

import pytest

from pts import StoreUnavailable, StreamStatus
from pts.errors import PersistenceFailed
from pts.flush import Flusher, FlushPolicy
from pts.store import SQLStore

NEVER = 3600.0  # a max_delay that never fires within a test


@pytest.mark.parametrize(
    ("buffer", "cut"),
    [
        ("Hello. Wor", 7),
        ("Hello.", 0),  # not yet: "3." might become "3.14"
        ("pi is 3.14 and", 0),
        ("a.b() and e.g.x", 0),
        ('He said "hi." Then', 14),
        ("Really?! Yes", 9),
        ("你好。世界", 3),
        ("第一！第二？第三", 6),
        ("line one\nline two", 9),
        ("First. Second. Thi", 15),
        ("no punctuation at all", 0),
        ("", 0),
    ],
)
def test_sentence_cut(buffer: str, cut: int) -> None:
    assert FlushPolicy().sentence_cut(buffer) == cut


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        FlushPolicy(max_bytes=0)
    with pytest.raises(ValueError, match="max_delay"):
        FlushPolicy(max_delay=-1)


class CountingStore:
    """Wraps a real store; counts appends and can fail them on purpose."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self.appends: list[bytes] = []
        self.fail_next = 0  # raise StoreUnavailable before this many appends
        self.fail_after_commit = 0  # commit, then raise StoreUnavailable (lost ack)

    async def append(
        self,
        stream_id: object,
        data: bytes,
        *,
        offset: int,
        finish: StreamStatus | None = None,
        reason: str | None = None,
    ) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise StoreUnavailable("injected outage")
        size = await self.store.append(
            stream_id,  # type: ignore[arg-type]
            data,
            offset=offset,
            finish=finish,
            reason=reason,
        )
        self.appends.append(data)
        if self.fail_after_commit:
            self.fail_after_commit -= 1
            raise StoreUnavailable("injected: connection lost after commit")
        return size

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def make_flusher(
    store: SQLStore, policy: FlushPolicy, *, outage_limit: float = 30.0
) -> tuple[Flusher, CountingStore]:
    counting = CountingStore(store)
    info = await store.create_stream(status=StreamStatus.STREAMING)
    flusher = Flusher(
        counting,  # type: ignore[arg-type]
        info.id,
        offset=0,
        policy=policy,
        outage_limit=outage_limit,
    )
    flusher.start()
    return flusher, counting


def tokens_of(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def test_one_write_per_sentence_not_per_token(store: SQLStore) -> None:
    sentences = [f"Sentence number {i} is here." for i in range(12)]
    text = " ".join(sentences) + " The end"
    flusher, counting = await make_flusher(store, FlushPolicy(max_delay=NEVER))
    tokens = tokens_of(text)
    for token in tokens:
        flusher.write(token)
        await asyncio.sleep(0)
    await flusher.finish(StreamStatus.DONE)
    read = await store.read(flusher.stream_id)
    assert read.data.decode() == text
    assert read.status is StreamStatus.DONE
    # At most one write per sentence plus the final one, far fewer than tokens.
    assert len(counting.appends) <= len(sentences) + 1
    assert len(tokens) > 3 * len(counting.appends)
    assert b"".join(counting.appends) == text.encode()
    # Every write but the last ends at a sentence end.
    for piece in counting.appends[:-1]:
        assert piece.decode().rstrip().endswith(".")


async def test_decimal_numbers_do_not_end_a_sentence(store: SQLStore) -> None:
    flusher, counting = await make_flusher(store, FlushPolicy(max_delay=NEVER))
    for token in ["pi is 3", ".", "14", " and e", ".g"]:
        flusher.write(token)
        await asyncio.sleep(0.01)
    assert counting.appends == []  # "3.14" did not end a sentence
    flusher.write(". ")
    flusher.write("more")
    # "e.g. " does end a sentence by this rule.
    await asyncio.wait_for(_until(lambda: bool(counting.appends)), 5)
    assert counting.appends == [b"pi is 3.14 and e.g. "]
    await flusher.finish(StreamStatus.DONE)
    assert counting.appends == [b"pi is 3.14 and e.g. ", b"more"]


async def test_text_without_punctuation_is_flushed_after_max_delay(store: SQLStore) -> None:
    flusher, counting = await make_flusher(store, FlushPolicy(max_delay=0.05))
    flusher.write("no punctuation here")
    await asyncio.wait_for(_until(lambda: bool(counting.appends)), 5)
    assert counting.appends == [b"no punctuation here"]
    await flusher.finish(StreamStatus.DONE)


async def test_nothing_is_written_before_a_boundary_or_the_deadline(store: SQLStore) -> None:
    flusher, counting = await make_flusher(store, FlushPolicy(max_delay=NEVER))
    flusher.write("still thinking")
    await asyncio.sleep(0.2)
    assert counting.appends == []
    await flusher.finish(StreamStatus.DONE)
    assert counting.appends == [b"still thinking"]


async def test_max_bytes_forces_a_write(store: SQLStore) -> None:
    flusher, counting = await make_flusher(store, FlushPolicy(max_bytes=16, max_delay=NEVER))
    for token in tokens_of("x" * 40, 4):
        flusher.write(token)
        await asyncio.sleep(0)
    await asyncio.wait_for(_until(lambda: sum(map(len, counting.appends)) >= 32), 5)
    assert all(len(a) >= 16 for a in counting.appends)
    await flusher.finish(StreamStatus.DONE)
    assert (await store.read(flusher.stream_id)).data == b"x" * 40


async def test_multibyte_tokens_are_byte_exact(store: SQLStore) -> None:
    text = "Ça va? 😀👍🏽 你好。世界！ naïve ☕. Ünïcödé\nend"
    flusher, _ = await make_flusher(store, FlushPolicy(max_bytes=7, max_delay=NEVER))
    for ch in text:  # one character per token
        flusher.write(ch)
        await asyncio.sleep(0)
    await flusher.finish(StreamStatus.DONE)
    assert (await store.read(flusher.stream_id)).data == text.encode()


async def test_outage_keeps_text_in_order_and_retries(store: SQLStore) -> None:
    flusher, counting = await make_flusher(store, FlushPolicy(max_delay=NEVER))
    counting.fail_next = 3
    for sentence in ("One. ", "Two. ", "Three. ", "Four."):
        flusher.write(sentence)
        await asyncio.sleep(0)
    await flusher.finish(StreamStatus.DONE)
    read = await store.read(flusher.stream_id)
    assert read.data == b"One. Two. Three. Four."
    assert read.status is StreamStatus.DONE
    # Counted for pts.stats(): three failed attempts, each retried; the commits.
    counters = flusher.counters
    assert (counters.database_errors, counters.outage_retries) == (3, 3)
    assert counters.appends == len(counting.appends)
    assert counters.bytes_persisted == len(read.data)
    flushes = counters.flush_seconds.snapshot()
    assert flushes.count == counters.appends
    assert counters.flush_bytes.snapshot().sum == len(read.data)


async def test_lost_acknowledgement_is_not_duplicated(store: SQLStore) -> None:
    flusher, counting = await make_flusher(store, FlushPolicy(max_delay=NEVER))
    counting.fail_after_commit = 1
    flusher.write("Committed but unacknowledged. ")
    flusher.write("Next.")
    await flusher.finish(StreamStatus.DONE)
    read = await store.read(flusher.stream_id)
    assert read.data == b"Committed but unacknowledged. Next."
    # The append that had committed counts once, as a commit.
    assert flusher.counters.appends == len(counting.appends)
    assert flusher.counters.bytes_persisted == len(read.data)
    assert (flusher.counters.database_errors, flusher.counters.outage_retries) == (1, 1)


async def test_outage_past_the_limit_fails_clearly(store: SQLStore) -> None:
    flusher, counting = await make_flusher(store, FlushPolicy(max_delay=NEVER), outage_limit=0.2)
    counting.fail_next = 10_000
    flusher.write("This will not persist. ")
    with pytest.raises(PersistenceFailed, match="unreachable"):
        await flusher.finish(StreamStatus.DONE)
    assert (await store.get_stream(flusher.stream_id)).size == 0
    # Every failed attempt counted; the last one was given up, not retried.
    counters = flusher.counters
    assert counters.database_errors >= 2
    assert counters.outage_retries == counters.database_errors - 1
    assert (counters.appends, counters.bytes_persisted) == (0, 0)


async def _until(predicate: object) -> None:
    assert callable(predicate)
    while not predicate():
        await asyncio.sleep(0.01)

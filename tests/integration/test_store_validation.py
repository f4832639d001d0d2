"""The store is the last line of defence: input Postgres cannot hold is an InvalidInput, before SQL.

Every case here reached the database before (and came back as a driver error, an
OverflowError or a RecursionError: a 500 on any route that passed it on), or was
stored and then broke every later read. Each runs on both drivers.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pts import InvalidInput, PersistentTextStreaming, PTSPlugin, StreamStatus
from pts.models import Producer
from pts.plugin import allow_everything
from pts.store import SQLStore
from pts.store.validate import MAX_KEY_BYTES, MAX_METADATA_DEPTH

S = StreamStatus
INT8_MAX = 2**63 - 1


def incompressible(n: int) -> str:
    """``n`` ASCII characters Postgres cannot compress below the btree limit."""
    rng = random.Random(n)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


class Unserialisable:
    pass


Op = Callable[[SQLStore, Any], Awaitable[object]]
"""One store call, taking the bad value as its second argument."""

BAD_TEXT: dict[str, Any] = {
    "nul": "a\x00b",
    "lone surrogate": "a\ud800b",
    "low surrogate": "\udc80",
}
BAD_KEYS: dict[str, Any] = {
    **BAD_TEXT,
    "too long": "x" * (MAX_KEY_BYTES + 1),
    "too long in UTF-8": "é" * (MAX_KEY_BYTES // 2 + 1),
    "past the btree limit": incompressible(3000),
}
BAD_METADATA: dict[str, Any] = {
    "NaN": {"k": float("nan")},
    "infinity": {"k": [float("inf")]},
    "an object": {"k": Unserialisable()},
    "a set": {"k": {1, 2}},
    "an int key": {1: "x"},
    "an int past the digit limit": {"k": 10**5000},
    "a list": [1, 2],
    "too deep": nested(MAX_METADATA_DEPTH + 1),
    "pathologically deep": nested(100_000),
}
BAD_TIMES: dict[str, Any] = {
    "past year 9999 in UTC": datetime(9999, 12, 31, 23, 0, tzinfo=timezone(-timedelta(hours=5))),
    "before year 1 in UTC": datetime(1, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))),
    "without a time zone": datetime(2030, 1, 1),  # naive: the point of the case
}
BAD_TTLS: dict[str, Any] = {"past int8": 2**63, "past year 9999": 10**12, "negative": -1}
BAD_STREAM_TTLS: dict[str, Any] = {
    **BAD_TTLS,
    "zero": 0,
    "NaN": float("nan"),
    "infinite": float("inf"),
    "a string": "60",
    "a bool": True,
    "past float": 10**400,
}
BAD_INTS: dict[str, Any] = {"past int8": 2**63, "huge": 10**30, "not an int": 1.5}
BAD_SECONDS: dict[str, Any] = {"infinite": float("inf"), "NaN": float("nan"), "huge": 1e300}

OPS: dict[str, tuple[Op, dict[str, Any]]] = {
    "create client_id": (lambda s, x: s.create_stream(client_id=x), BAD_KEYS),
    "create path": (lambda s, x: s.create_stream(path=x), BAD_KEYS),
    "lookup client_id": (lambda s, x: s.get_stream_by_client_id(x), BAD_KEYS),
    "lookup path": (lambda s, x: s.get_stream_by_path(x), BAD_KEYS),
    "ds_lookup path": (lambda s, x: s.ds_lookup(x), BAD_KEYS),
    "ds_create path": (lambda s, x: s.ds_create(x, content_type="text/plain"), BAD_KEYS),
    "ds_append path": (lambda s, x: s.ds_append(x, b"x", media_type="text/plain"), BAD_KEYS),
    "producer id": (lambda s, x: _ds_append(s, producer=Producer(x, 0, 0)), BAD_KEYS),
    "content_type": (lambda s, x: s.create_stream(content_type=x), BAD_TEXT),
    "owner": (lambda s, x: s.create_stream(owner=x), BAD_TEXT),
    "metadata key": (lambda s, x: s.create_stream(metadata={x: 1}), BAD_TEXT),
    "metadata value": (lambda s, x: s.create_stream(metadata={"k": x}), BAD_TEXT),
    "nested metadata value": (lambda s, x: s.create_stream(metadata={"a": [{"b": [x]}]}), BAD_TEXT),
    "metadata": (lambda s, x: s.create_stream(metadata=x), BAD_METADATA),
    "append reason": (lambda s, x: _append(s, b"", finish=S.ABORTED, reason=x), BAD_TEXT),
    "set_status reason": (lambda s, x: _set_status(s, S.ERROR, x), BAD_TEXT),
    "ds_create content_type": (lambda s, x: s.ds_create("p", content_type=x), BAD_TEXT),
    "ds_append media_type": (lambda s, x: _ds_append(s, media_type=x), BAD_TEXT),
    "ds_append stream_seq": (lambda s, x: _ds_append(s, stream_seq=x), BAD_TEXT),
    "expires_at": (lambda s, x: s.create_stream(expires_at=x), BAD_TIMES),
    "ds_create expires_at": (
        lambda s, x: s.ds_create("p", content_type="text/plain", expires_at=x),
        BAD_TIMES,
    ),
    "ttl": (lambda s, x: s.ds_create("p", content_type="text/plain", ttl_seconds=x), BAD_TTLS),
    "append offset": (lambda s, x: _append(s, b"x", offset=x), BAD_INTS),
    "read offset": (lambda s, x: _read(s, offset=x), BAD_INTS),
    "read max_bytes": (lambda s, x: _read(s, offset=0, max_bytes=x), {"not an int": 1.5}),
    "fork offset": (lambda s, x: _fork(s, fork_offset=x), BAD_INTS),
    "fork sub-offset": (lambda s, x: _fork(s, fork_offset=0, sub=x), BAD_INTS),
    "producer epoch": (
        lambda s, x: _ds_append(s, producer=Producer("p", x, 0)),
        {**BAD_INTS, "negative": -1},
    ),
    "producer seq": (lambda s, x: _ds_append(s, producer=Producer("p", 0, x)), BAD_INTS),
    "collect limit": (lambda s, x: s.collect_garbage(x), BAD_INTS),
    "stale limit": (lambda s, x: s.timeout_stale(1.0, x), BAD_INTS),
    "stale_after": (lambda s, x: s.timeout_stale(x), BAD_SECONDS),
    "find_stale": (lambda s, x: s.find_stale(x), BAD_SECONDS),
    "pending_after": (lambda s, x: s.timeout_pending(x), BAD_SECONDS),
    "create ttl": (lambda s, x: s.create_stream(ttl=x), BAD_STREAM_TTLS),
    "prune finished_before": (lambda s, x: s.prune(x), BAD_TIMES),
    "prune limit": (lambda s, x: s.prune(datetime.now(UTC), x), {**BAD_INTS, "zero": 0}),
    "count_prunable": (lambda s, x: s.count_prunable(x), BAD_TIMES),
}
CASES = {f"{op} {name}": (op, name) for op, (_, values) in OPS.items() for name in values}


async def _run(store: SQLStore, case: str) -> object:
    op, name = CASES[case]
    call, values = OPS[op]
    return await call(store, values[name])


async def _new(store: SQLStore) -> uuid.UUID:
    return (await store.create_stream(status=S.STREAMING)).id


async def _append(
    store: SQLStore,
    data: bytes,
    *,
    offset: int = 0,
    finish: StreamStatus | None = None,
    reason: str | None = None,
) -> int:
    return await store.append(await _new(store), data, offset=offset, finish=finish, reason=reason)


async def _set_status(store: SQLStore, status: StreamStatus, reason: str) -> object:
    return await store.set_status(await _new(store), status, reason=reason)


async def _read(store: SQLStore, *, offset: int, max_bytes: int | None = None) -> object:
    return await store.read(await _new(store), offset, max_bytes)


async def _ds_append(
    store: SQLStore,
    *,
    media_type: str = "text/plain",
    stream_seq: str | None = None,
    producer: Producer | None = None,
) -> object:
    await store.ds_create("p", content_type="text/plain")
    return await store.ds_append(
        "p", b"x", media_type=media_type, stream_seq=stream_seq, producer=producer
    )


async def _fork(store: SQLStore, *, fork_offset: int, sub: int | None = None) -> object:
    _, source = await store.ds_create("src", content_type="text/plain", data=b"abc")
    return await store.ds_create(
        "fork",
        content_type="text/plain",
        source=source,
        fork_offset=fork_offset,
        fork_sub_offset=sub,
    )


DURABLE = ("ds_", "producer ", "fork ", "ttl ")
"""Cases of the Durable Streams operations, which the memory store does not serve."""
ON_POSTGRES = pytest.mark.postgres_only(reason="Durable Streams operations")


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=ON_POSTGRES) if c.startswith(DURABLE) else c for c in sorted(CASES)],
)
async def test_bad_input_is_invalid_input_and_changes_nothing(store: SQLStore, case: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await _run(store, case)
    assert str(caught.value)
    # The store still works afterwards (no broken connection, nothing half-written).
    info = await store.create_stream(client_id=f"after {case}")
    assert (await store.get_stream(info.id)).client_id == f"after {case}"


@ON_POSTGRES
async def test_the_limits_themselves_are_accepted(store: SQLStore) -> None:
    longest = incompressible(MAX_KEY_BYTES)
    info = await store.create_stream(
        client_id=longest,
        path=longest,
        metadata=nested(MAX_METADATA_DEPTH),
        expires_at=datetime(9999, 12, 1, tzinfo=UTC),
    )
    assert (await store.get_stream_by_client_id(longest)).id == info.id
    assert (await store.get_stream_by_path(longest)).metadata == nested(MAX_METADATA_DEPTH)
    unicode_id = "é" * (MAX_KEY_BYTES // 2)
    assert (await store.create_stream(client_id=unicode_id)).client_id == unicode_id
    sid = await _new(store)
    assert (await store.read(sid, 0, max_bytes=INT8_MAX)).data == b""
    await store.append(sid, b"x", offset=0, finish=S.ABORTED, reason="why: é 🚀")
    assert (await store.get_stream(sid)).abort_reason == "why: é 🚀"
    outcome, _ = await store.ds_create("p", content_type="text/plain", ttl_seconds=86400 * 365)
    assert outcome == "created"
    await store.ds_append("p", b"x", media_type="text/plain", producer=Producer("p", INT8_MAX, 0))


@ON_POSTGRES
async def test_a_stream_that_expires_late_in_year_9999_stays_readable(store: SQLStore) -> None:
    # Stored as UTC; a far expiry in a western time zone would have been year 10000 in UTC.
    when = datetime(9999, 12, 29, 19, 0, tzinfo=timezone(-timedelta(hours=5)))
    outcome, sid = await store.ds_create("p", content_type="text/plain", expires_at=when)
    assert outcome == "created"
    assert sid is not None
    found = await store.ds_lookup("p")
    assert found is not None
    assert found.stream.expires_at == when
    assert await store.ds_delete(sid) == "deleted"


async def test_the_plugin_routes_answer_400_not_500(db_url: str) -> None:
    pts = PersistentTextStreaming(dsn=db_url)
    app = Litestar(plugins=[PTSPlugin(pts, authorize=allow_everything)])
    async with AsyncTestClient(app, timeout=20) as client:
        bodies: list[dict[str, Any]] = [
            {"client_id": "a\x00b"},
            {"client_id": incompressible(3000)},
            {"metadata": {"k": "v\x00"}},
            {"metadata": {"k\x00": 1}},
            {"metadata": nested(MAX_METADATA_DEPTH + 1)},
        ]
        for body in bodies:
            response = await client.post("/streams", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"] == "invalid_input"
        sid = (await client.post("/streams")).json()["id"]
        response = await client.post(f"/streams/{sid}/cancel", json={"reason": "no\x00"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_input"
        response = await client.get(f"/streams/{sid}/events", params={"offset": str(2**63)})
        assert response.status_code == 400
        assert (await client.get(f"/streams/{sid}")).json()["status"] == "pending"

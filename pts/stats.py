"""``Stats`` and ``LiveStream``: snapshots of what one process's component is doing.

The one seam through which tests, benchmarks, metrics and operators look
inside a running :class:`~pts.PersistentTextStreaming` (``pts.stats()``), so
that none of them reaches into its private parts.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "BYTE_BUCKETS",
    "SECOND_BUCKETS",
    "Counters",
    "Distribution",
    "Histogram",
    "LiveStream",
    "Stats",
]

SECOND_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of the buckets of :attr:`Stats.flush_seconds` and
:attr:`Stats.delivery_seconds`: a commit on a local Postgres takes about a
millisecond, an outage's retries seconds."""

BYTE_BUCKETS: tuple[float, ...] = (
    16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576,
)  # fmt: skip
"""Upper bounds (bytes) of the buckets of :attr:`Stats.flush_bytes`: a sentence is
~100 bytes, ``FlushPolicy.max_bytes`` 4 KiB by default."""


@dataclass(frozen=True, slots=True)
class Distribution:
    """A :class:`Histogram` at one moment: how many observations fell in each bucket.

    ``counts[i]`` counts the values ``<= bounds[i]`` and above ``bounds[i - 1]``;
    the last of the ``len(bounds) + 1`` counts, those above every bound.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        """Observations in all."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` for every bound and ``inf``, as Prometheus
        writes a histogram's buckets."""
        running = 0
        out: list[tuple[float, int]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class Histogram:
    """A distribution kept cheaply as it happens: a bisect and two additions per value.

    The component's parts observe into one (once per flush, once per delivery:
    never per token); :meth:`snapshot` is what :class:`Stats` reports.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("a histogram's bounds must be increasing")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` (in the first bucket whose bound is at least ``value``)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> Distribution:
        """The counts so far."""
        return Distribution(self.bounds, tuple(self.counts), self.sum)


class Counters:
    """The totals one component's parts keep as they work (what :class:`Stats` reports).

    One instance per component, handed to its flushers, its hub and its
    background work; each adds to it on its own path (an integer increment, a
    histogram observation per flush or delivery), so ``pts.stats()`` stays the
    one place these are read, and metrics are built on it.
    """

    __slots__ = (
        "appends",
        "bytes_persisted",
        "database_errors",
        "delivery_seconds",
        "flush_bytes",
        "flush_seconds",
        "outage_retries",
        "protocol_appends",
        "protocol_bytes",
        "request_failures",
    )

    def __init__(self) -> None:
        self.appends = 0
        self.bytes_persisted = 0
        self.database_errors = 0
        self.outage_retries = 0
        self.protocol_appends = 0
        self.protocol_bytes = 0
        self.request_failures: dict[str, int] = {}
        self.flush_seconds = Histogram(SECOND_BUCKETS)
        self.flush_bytes = Histogram(BYTE_BUCKETS)
        self.delivery_seconds = Histogram(SECOND_BUCKETS)

    def flushed(self, nbytes: int, seconds: float) -> None:
        """A flusher's append committed ``nbytes`` after ``seconds`` (retries included)."""
        self.appends += 1
        self.bytes_persisted += nbytes
        self.flush_bytes.observe(nbytes)
        self.flush_seconds.observe(seconds)

    def protocol_appended(self, nbytes: int) -> None:
        """A Durable Streams append (POST, or a PUT's first bytes) committed ``nbytes``."""
        self.protocol_appends += 1
        self.protocol_bytes += nbytes

    def request_failed(self, kind: str) -> None:
        """A request was answered with a 5xx whose ``"error"`` is ``kind`` (the one table's)."""
        self.request_failures[kind] = self.request_failures.get(kind, 0) + 1


@dataclass(frozen=True)
class Stats:
    """What one process's component holds and has done, at one moment.

    Counts (``writers`` … ``subscribers``) are current; totals
    (``tail_reads``, ``notifications``, ``listener_reconnects``, ``appends`` …
    ``outage_retries``) and distributions only grow: the listener's from
    :meth:`~pts.PersistentTextStreaming.open` on, the rest from the component's
    construction.
    """

    open: bool
    """The component is open (between ``open()`` and ``close()``)."""
    stopping: bool
    """The server running this process began to stop."""
    writers: int
    """Streams this process writes: driven answers and open writers."""
    drives: int
    """Driven answers (``stream()``) whose generation runs in this process."""
    attached_drives: int
    """Driven answers whose driving client still reads the response."""
    tails: int
    """Streams with at least one live reader here: one database tail each."""
    subscribers: int
    """Live reads held: SSE responses, long-polls, ``subscribe()`` iterators."""
    tail_reads: int
    """Database reads made by the tails (at most one per notification per stream,
    or one per page when a notification brings more than a page)."""
    notifications: int
    """Change notifications this process received (NOTIFY, or a MemoryStore's)."""
    listener_connected: bool
    """The LISTEN connection is up (always True with a MemoryStore, which has none)."""
    listener_reconnects: int
    """LISTEN connections re-established after the first one."""
    appends: int
    """Appends this process's flushers committed (driven answers and writers; the
    Durable Streams protocol's own are :attr:`protocol_appends`)."""
    bytes_persisted: int
    """Bytes those appends persisted."""
    database_errors: int
    """Database operations of this process's own work that failed: a flusher's append
    attempt (through an outage, each attempt), a tail's read, a heartbeat or sweep."""
    outage_retries: int
    """Appends a flusher retried after the database was unavailable (StoreUnavailable)."""
    flush_seconds: Distribution
    """Seconds from a flush's first append attempt to its commit (retries included)."""
    flush_bytes: Distribution
    """Bytes per committed flush (the final one, which sets the status, may be 0)."""
    delivery_seconds: Distribution
    """Seconds from a change notification's arrival at a stream's tail here to the
    new bytes handed to that stream's subscribers (the tail's database read and
    the wait for it), once per read that brought bytes after a notification."""
    protocol_appends: int = 0
    """Appends the Durable Streams protocol committed here: POSTs that appended or
    closed (not an idempotent producer's duplicate), and PUTs that created a stream
    with its first bytes."""
    protocol_bytes: int = 0
    """Bytes those appends persisted (a JSON stream's framed messages, as stored)."""
    append_transactions: int = 0
    """Transactions this process's group commit ran for appends, the flushers' and the
    protocol's (one per batch, one per append run alone; 0 without Postgres):
    ``(appends + protocol_appends) / append_transactions`` is how many share one."""
    request_failures: Mapping[str, int] = field(default_factory=dict)
    """Requests answered with a 5xx by pts's error table, by the answer's ``"error"``
    (``store_unavailable``, ``draining``, ``internal_error`` ...): what the server
    logs as its own failures. Handlers an app registered itself are not counted."""


@dataclass(frozen=True)
class LiveStream:
    """One stream this process reads live, at one moment (``pts.live_stream(id)``).

    A read-only view for monitoring and tests: what the stream's tail (the one
    database reader of the stream here) has read, and what its subscribers hold.
    """

    stream_id: uuid.UUID
    offset: int | None
    """The bytes the tail has read and handed to its subscribers (``None`` until
    the first subscriber's catch-up read told it where the stream ends)."""
    subscribers: int
    """Live reads of this stream held here (SSE responses, long-polls, iterators)."""
    buffered_bytes: tuple[int, ...]
    """The bytes each subscriber holds in its buffer (each at most
    ``subscriber_buffer_bytes``, or one chunk if a single one is larger)."""
    reads: int
    """Database reads this tail made since it started (it ends with its last subscriber)."""

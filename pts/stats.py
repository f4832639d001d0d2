"""``Stats`` and ``LiveStream``: snapshots of what one process's component is doing.

The one seam through which tests, benchmarks, metrics and operators look
inside a running :class:`~pts.PersistentTextStreaming` (``pts.stats()``), so
that none of them reaches into its private parts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """What one process's component holds and has done, at one moment.

    Counts (``writers`` … ``subscribers``) are current; totals
    (``tail_reads``, ``notifications``, ``listener_reconnects``) only grow,
    from :meth:`~pts.PersistentTextStreaming.open` on.
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

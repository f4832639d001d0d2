"""An in-memory store, for testing an app's code without Postgres.

:class:`MemoryStore` keeps every stream in a dict and implements the
operations of :class:`~pts.store.base.Store` with the same semantics and the
same typed errors as the SQL stores (the store contract suite runs against
all three): offsets and one-winner appends, ``StreamClosed``,
``InvalidTransition`` on a lost claim, heartbeats, the stale and pending
sweeps, ``max_stream_size``, and the input checks of
:mod:`pts.store.validate`. It also "notifies" in process, as the database's
trigger does, so :class:`~pts.PersistentTextStreaming` runs on it::

    pts = PersistentTextStreaming(store=MemoryStore())

Its limits: one process (no cross-process notifications, no persistence),
and no Durable Streams protocol (``ds_lookup``, ``ds_create``, ``ds_append``
raise :class:`DurableStreamsNotSupported`).
"""

from pts.testing.durable import DurableStreamsNotSupported
from pts.testing.memory import MemoryStore
from pts.testing.rows import Clock

__all__ = ["Clock", "DurableStreamsNotSupported", "MemoryStore"]

"""Live reads: how a change committed anywhere reaches this process's readers.

- :mod:`pts.live.notification`: ``Notification``, one change of a stream;
- :mod:`pts.live.listener`: the one LISTEN connection per process (asyncpg);
- :mod:`pts.live.feed`: ``ChangeFeed``, notifications from Postgres or a MemoryStore;
- :mod:`pts.live.buffer`: ``Chunk`` and a subscriber's bounded buffer;
- :mod:`pts.live.hub`: ``Hub``, one tail per stream, a buffer per subscriber;
- :mod:`pts.live.subscribe`: ``subscribe_text``, the hub's bytes as text ``Update`` values.
"""

"""Benchmarks of pts (``pts bench ...``): measurements to read, never tests to pass.

They are clients of the public API: the servers they measure run in their own
processes and report through ``pts.stats()`` and public calls; the load side
speaks HTTP and reads the database through a store (plus the few measuring and
filling queries no store call makes, all in ``sql/bench.sql``).

- ``driven`` (:mod:`.driven`, server :mod:`.driven_app`, figures :mod:`.driven_report`):
  what driving a stream through ``pts.stream()`` costs the client that asked,
  next to a bare Litestar streaming response, and the database writes per answer.
- ``fanout`` (:mod:`.fanout`, :mod:`.fanout_step`, server :mod:`.fanout_app`,
  figures :mod:`.fanout_report`, subscribers :mod:`.sse_client`): live SSE
  subscribers, many per stream: delay from commit to subscriber, loss, the
  server's connections and reads per flush, how far the count scales.
- ``protocol`` (:mod:`.protocol`, load :mod:`.protocol_load`, figures
  :mod:`.protocol_report`): the Durable Streams routes next to the protocol's
  reference server, given by URL or started by the checkout's
  ``tests/reference_server.py``; on pts also Postgres transactions and NOTIFYs
  per append, and ``pts serve --workers 2`` beside 1 worker.
- ``growth`` (:mod:`.growth`, figures :mod:`.growth_report`): how the figures
  move as the work grows: more streams, a longer stream (before and after
  compaction), a larger chunk table; each level next to the first.
- shared: :mod:`.config` (every parameter, declared once with its flag),
  :mod:`.commands` (the command line), :mod:`.client` (the one load client:
  HTTP, chunked decoding, SSE parsing), :mod:`.probes` (commit clock,
  connection and loop samplers), :mod:`.common` (bench database, server
  process, statistics, output).

Every benchmark runs its server in a separate process, measures over real HTTP
and is bounded in count and time.
"""

"""Benchmarks of pts (``pts bench ...``): measurements to read, never tests to pass.

- :mod:`pts.bench.driven` (``pts bench driven``): what driving a stream through
  :meth:`~pts.core.PersistentTextStreaming.stream` costs the client that asked,
  next to a bare Litestar streaming response, and how many database writes an
  answer takes (without sleeps and at LLM pace), next to one write per token.
- :mod:`pts.bench.fanout` (``pts bench fanout``): live SSE subscribers, many
  per stream, over real HTTP from a separate load process: delay from a
  flush's commit to each subscriber, lost or repeated bytes, the server's
  database connections and reads per flush, and how far the subscriber count
  scales (server: :mod:`pts.bench.fanout_app`; client: :mod:`pts.bench.sse_client`).
- :mod:`pts.bench.protocol` (``pts bench protocol``): the Durable Streams
  routes over real HTTP (append latency and throughput, catch-up read, SSE
  latency), next to the protocol's reference Node server measured in the same
  run (started by :file:`reference_server.mjs`).
- :mod:`pts.bench.common`: what they share (HTTP client, server process, bench
  database, statistics, output).

Every benchmark runs its server in a separate process, measures over real HTTP
and is bounded in count and time.
"""

from __future__ import annotations

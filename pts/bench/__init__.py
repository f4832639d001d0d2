"""Benchmarks of pts (``pts bench ...``): measurements to read, never tests to pass.

- :mod:`pts.bench.driven` (``pts bench driven``): what driving a stream through
  :meth:`~pts.core.PersistentTextStreaming.stream` costs the client that asked,
  next to a bare Litestar streaming response, and how many database writes an
  answer takes, next to one write per token.

Every benchmark runs its server in a separate process, measures over real HTTP
and is bounded in count and time.
"""

from __future__ import annotations

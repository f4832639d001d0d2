"""Durable Streams: the open HTTP protocol for append-only streams, served from Postgres.

:class:`~pts.durable.routes.DurableStreams` is the protocol's ASGI app;
:class:`~pts.plugin.PTSPlugin` mounts it at ``/v1/stream``. :mod:`pts.durable.wire`
holds the wire format (offsets, JSON framing, SSE events).
"""

from pts.durable.routes import DurableStreams

__all__ = ["DurableStreams"]

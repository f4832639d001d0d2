"""Durable Streams: the open HTTP protocol for append-only streams, served from Postgres.

:class:`~pts.http.durable.app.DurableStreams` is the protocol's ASGI app, built from
the component, the access object (:mod:`pts.http.access`) and its
:class:`~pts.http.durable.settings.ProtocolSettings`; :class:`~pts.plugin.PTSPlugin`
mounts it at ``/v1/stream``. :mod:`pts.http.durable.wire`
holds the wire format (offsets, JSON framing, SSE events) and the bounds on every
input; :mod:`pts.http.durable.live` the long-poll and SSE reads; :mod:`pts.http.durable.responses`
the hand-written responses. Errors are answered from the one table, :mod:`pts.http.errors`.
"""

from pts.http.durable.app import DurableStreams
from pts.http.durable.settings import ProtocolSettings

__all__ = ["DurableStreams", "ProtocolSettings"]

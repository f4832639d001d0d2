"""pts's HTTP edge: everything that speaks HTTP, above the component (:mod:`pts.core`).

- :mod:`~pts.http.access`: who may do what (the ``authorize`` hook, actions, the
  admin token): one :class:`~pts.http.access.Access` for both route sets;
- :mod:`~pts.http.errors`: the one table from pts errors to statuses and JSON bodies;
- :mod:`~pts.http.plugin`: :class:`~pts.http.plugin.PTSPlugin`, the Litestar wiring;
- :mod:`~pts.http.routes`: the stream routes (``/streams``), :mod:`~pts.http.sse`
  their server-sent events, :mod:`~pts.http.json_body` their bounded JSON bodies;
- :mod:`~pts.http.durable`: the Durable Streams protocol app, one module per verb;
- :mod:`~pts.http.app`: the ``pts serve`` app; :mod:`~pts.http.serving` and
  :mod:`~pts.http.shutdown` how it holds and ends connections;
  :mod:`~pts.http.noauth` and :mod:`~pts.http.loopback` what ``--no-auth`` lets in.

Nothing is imported here, so that importing one part runs no other.
"""

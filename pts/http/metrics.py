"""Prometheus metrics: ``pts.stats()`` in the Prometheus text format, at ``GET /metrics``.

Needs the optional extra (``pip install 'pts[metrics]'``, which brings
``prometheus-client``); :class:`~pts.http.plugin.PTSPlugin` imports this module
only with ``metrics=True``, so pts without the extra imports and runs.

Nothing is counted twice: :class:`PTSCollector` reads one ``pts.stats()``
snapshot per scrape and writes it as metric families (:data:`METRICS` is the
table, :func:`families` the mapping). The figures are kept by the component's
own parts as they work (:class:`pts.stats.Counters`); prometheus-client only
formats them, with its own exposition (text format 0.0.4, or OpenMetrics when
the scraper asks for it).

The figures are per process: with several workers (``pts serve --workers N``)
each scrape is answered by one of them (see the README, Operations → Metrics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from pts.core import PersistentTextStreaming
from pts.stats import Distribution, Stats

__all__ = ["METRICS", "MetricSpec", "PTSCollector", "families", "metrics_route", "registry_for"]

Kind = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its name (counters without ``_total``, which the format adds), its
    kind, its help text, and the figure of :class:`~pts.stats.Stats` it shows."""

    name: str
    kind: Kind
    help: str
    value: Callable[[Stats], float | Distribution | Mapping[str, int]]
    label: str | None = None
    """For a figure kept per kind (a mapping): the label its keys are written under."""


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "pts_active_drives",
        "gauge",
        "Driven answers (stream()) whose generation runs in this process.",
        lambda s: s.drives,
    ),
    MetricSpec(
        "pts_attached_drives",
        "gauge",
        "Driven answers whose driving client still reads the response.",
        lambda s: s.attached_drives,
    ),
    MetricSpec(
        "pts_writers",
        "gauge",
        "Streams this process writes: driven answers and open writers.",
        lambda s: s.writers,
    ),
    MetricSpec(
        "pts_subscribers",
        "gauge",
        "Live reads held: SSE responses, Durable Streams long-polls and live reads, "
        "subscribe() iterators.",
        lambda s: s.subscribers,
    ),
    MetricSpec(
        "pts_tails",
        "gauge",
        "Streams with at least one live reader in this process (one database tail each).",
        lambda s: s.tails,
    ),
    MetricSpec(
        "pts_appends",
        "counter",
        "Appends committed by this process's flushers (driven answers and writers; the "
        "Durable Streams protocol's are pts_protocol_appends).",
        lambda s: s.appends,
    ),
    MetricSpec(
        "pts_persisted_bytes",
        "counter",
        "Bytes persisted by those appends.",
        lambda s: s.bytes_persisted,
    ),
    MetricSpec(
        "pts_protocol_appends",
        "counter",
        "Appends the Durable Streams protocol committed here: POSTs that appended or closed "
        "(not a producer's duplicate) and PUTs that created a stream with its first bytes.",
        lambda s: s.protocol_appends,
    ),
    MetricSpec(
        "pts_protocol_persisted_bytes",
        "counter",
        "Bytes persisted by the Durable Streams protocol's appends.",
        lambda s: s.protocol_bytes,
    ),
    MetricSpec(
        "pts_append_transactions",
        "counter",
        "Transactions the group commit ran for appends, the flushers' and the protocol's "
        "(one per batch of appends that arrived together, one per append run alone).",
        lambda s: s.append_transactions,
    ),
    MetricSpec(
        "pts_flush_duration_seconds",
        "histogram",
        "Seconds from a flush's first append attempt to its commit, retries through a "
        "database outage included.",
        lambda s: s.flush_seconds,
    ),
    MetricSpec(
        "pts_flush_size_bytes",
        "histogram",
        "Bytes per committed flush (the final one, which only sets the status, may be 0).",
        lambda s: s.flush_bytes,
    ),
    MetricSpec(
        "pts_delivery_delay_seconds",
        "histogram",
        "Seconds from a change notification's arrival at a stream's tail in this process "
        "to the new bytes handed to that stream's subscribers' buffers (the tail's "
        "database read and the wait for it; not Postgres's NOTIFY delivery before it, "
        "nor the write to each client's socket after it). One per read that brought "
        "bytes after a notification.",
        lambda s: s.delivery_seconds,
    ),
    MetricSpec(
        "pts_notifications_received",
        "counter",
        "Change notifications this process received (LISTEN, or a MemoryStore's).",
        lambda s: s.notifications,
    ),
    MetricSpec(
        "pts_tail_reads",
        "counter",
        "Database reads made by the tails (about one per notification per stream).",
        lambda s: s.tail_reads,
    ),
    MetricSpec(
        "pts_listener_reconnects",
        "counter",
        "LISTEN connections re-established after the first one.",
        lambda s: s.listener_reconnects,
    ),
    MetricSpec(
        "pts_listener_connected",
        "gauge",
        "1 while the LISTEN connection is up, else 0.",
        lambda s: _flag(s.listener_connected),
    ),
    MetricSpec(
        "pts_database_errors",
        "counter",
        "Database operations of this process's own work that failed: a flusher's append "
        "attempt, a tail's read, a heartbeat or sweep (a request that failed is answered "
        "503 store_unavailable and counted in pts_request_failures).",
        lambda s: s.database_errors,
    ),
    MetricSpec(
        "pts_request_failures",
        "counter",
        "Requests pts answered with a 5xx, by the answer's error kind (store_unavailable, "
        "draining, internal_error, ...): the failures the server logs.",
        lambda s: s.request_failures,
        label="error",
    ),
    MetricSpec(
        "pts_outage_retries",
        "counter",
        "Appends a flusher retried because the database was unavailable.",
        lambda s: s.outage_retries,
    ),
    MetricSpec(
        "pts_draining",
        "gauge",
        "1 once the server running this process began to stop or drain (SIGTERM, Ctrl+C): "
        "new drives are refused (503 draining), else 0.",
        lambda s: _flag(s.stopping),
    ),
    MetricSpec(
        "pts_open",
        "gauge",
        "1 while the component is open (its pool connected), else 0.",
        lambda s: _flag(s.open),
    ),
)
"""Every pts metric, in the order they are written."""


def _le(bound: float) -> str:
    """A bucket's upper bound as the text format writes it (``+Inf`` for the last)."""
    return "+Inf" if bound == math.inf else repr(float(bound))


def families(stats: Stats) -> list[Metric]:
    """``stats`` as Prometheus metric families, one per entry of :data:`METRICS`."""
    out: list[Metric] = []
    for spec in METRICS:
        value = spec.value(stats)
        if isinstance(value, Distribution):
            buckets = [(_le(bound), count) for bound, count in value.cumulative()]
            out.append(HistogramMetricFamily(spec.name, spec.help, buckets, value.sum))
        elif isinstance(value, Mapping):
            assert spec.label is not None, spec.name  # a per-kind counter
            family = CounterMetricFamily(spec.name, spec.help, labels=[spec.label])
            for key, count in sorted(value.items()):
                family.add_metric([key], count)
            out.append(family)
        elif spec.kind == "counter":
            out.append(CounterMetricFamily(spec.name, spec.help, value))
        else:
            out.append(GaugeMetricFamily(spec.name, spec.help, value))
    return out


class PTSCollector:
    """A prometheus-client collector of one component's :meth:`~pts.PersistentTextStreaming.stats`.

    Read at scrape time, so the figures have one source. For an app that serves
    its own ``/metrics``: ``REGISTRY.register(PTSCollector(pts))`` (and leave the
    plugin's ``metrics`` off).
    """

    def __init__(self, pts: PersistentTextStreaming) -> None:
        self.pts = pts

    def collect(self) -> Iterable[Metric]:
        """The metric families of one ``pts.stats()`` snapshot."""
        return families(self.pts.stats())


def registry_for(pts: PersistentTextStreaming) -> CollectorRegistry:
    """A registry of ``pts``'s metrics and the process's own (CPU, memory, file
    descriptors, garbage collections, Python version): what ``/metrics`` writes.

    A registry per plugin rather than prometheus-client's global one, so that
    two apps in one process (tests, an app with two components) do not clash.
    """
    registry = CollectorRegistry()
    registry.register(PTSCollector(pts))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def metrics_route(registry: CollectorRegistry, path: str = "/metrics") -> HTTPRouteHandler:
    """``GET path``: the registry in the format the scraper asks for (prometheus-client's
    own encoders: text 0.0.4 by default, OpenMetrics on request).

    The route has no access check of its own: the app's guards and middleware
    apply as to any route; keep it off the public network (see the README).
    """

    @get(path, sync_to_thread=False, include_in_schema=False)
    def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        # Litestar adds the charset of a text/ type itself: said once, not twice.
        if content_type.startswith("text/"):
            content_type = content_type.replace("; charset=utf-8", "")
        return Response(encoder(registry), media_type=content_type)

    return metrics

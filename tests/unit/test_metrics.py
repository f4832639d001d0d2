"""The metrics' pure parts: the histograms of Stats, the collector's mapping of Stats to
Prometheus families, the README's list, and ``metrics=True`` without prometheus-client."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pts import PersistentTextStreaming, PTSPlugin
from pts.errors import ConfigurationError
from pts.http.app import METRICS_ENV, metrics_from_env
from pts.http.metrics import METRICS, PTSCollector, families
from pts.stats import Counters, Distribution, Histogram, Stats
from pts.testing import MemoryStore

README = Path(__file__).resolve().parents[2] / "README.md"


def test_a_value_on_a_bound_falls_in_that_bucket() -> None:
    """Prometheus buckets are ``le``: a value equal to a bound is counted under it."""
    histogram = Histogram((1.0, 2.0, 5.0))
    for value in (0.5, 1.0, 1.5, 2.0, 5.0, 7.0):
        histogram.observe(value)
    snap = histogram.snapshot()
    assert snap.counts == (2, 2, 1, 1)
    assert (snap.count, snap.sum) == (6, 17.0)
    assert snap.cumulative() == [(1.0, 2), (2.0, 4), (5.0, 5), (math.inf, 6)]
    # A snapshot is a copy: later observations do not change it.
    histogram.observe(0.1)
    assert snap.count == 6
    with pytest.raises(ValueError, match="increasing"):
        Histogram((2.0, 1.0))


def _stats(**changes: object) -> Stats:
    counters = Counters()
    base = Stats(
        open=True,
        stopping=False,
        writers=3,
        drives=2,
        attached_drives=1,
        tails=4,
        subscribers=7,
        tail_reads=11,
        notifications=13,
        listener_connected=True,
        listener_reconnects=1,
        appends=17,
        bytes_persisted=1900,
        database_errors=5,
        outage_retries=4,
        flush_seconds=counters.flush_seconds.snapshot(),
        flush_bytes=counters.flush_bytes.snapshot(),
        delivery_seconds=counters.delivery_seconds.snapshot(),
        protocol_appends=23,
        protocol_bytes=2300,
        append_transactions=29,
        request_failures={"store_unavailable": 3, "internal_error": 1},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _samples(stats: Stats) -> dict[str, list[Sample]]:
    """``stats`` written by prometheus-client and read back by its own parser."""

    class Fixed:
        def collect(self) -> list[object]:
            return list(families(stats))

    registry = CollectorRegistry()
    registry.register(Fixed())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples: dict[str, list[Sample]], family: str, sample: str | None = None) -> float:
    (found,) = [s.value for s in samples[family] if s.name == (sample or family)]
    return found


def test_every_figure_of_stats_maps_to_its_metric() -> None:
    samples = _samples(_stats())
    assert set(samples) == {spec.name for spec in METRICS}
    gauges = {
        "pts_active_drives": 2,
        "pts_attached_drives": 1,
        "pts_writers": 3,
        "pts_tails": 4,
        "pts_subscribers": 7,
        "pts_listener_connected": 1,
        "pts_draining": 0,
        "pts_open": 1,
    }
    for name, value in gauges.items():
        assert _value(samples, name) == value, name
    counters = {
        "pts_appends": 17,
        "pts_persisted_bytes": 1900,
        "pts_notifications_received": 13,
        "pts_tail_reads": 11,
        "pts_listener_reconnects": 1,
        "pts_database_errors": 5,
        "pts_outage_retries": 4,
        "pts_protocol_appends": 23,
        "pts_protocol_persisted_bytes": 2300,
        "pts_append_transactions": 29,
    }
    for name, value in counters.items():
        assert _value(samples, name, name + "_total") == value, name
    failures = {s.labels["error"]: s.value for s in samples["pts_request_failures"]}
    assert failures == {"store_unavailable": 3, "internal_error": 1}
    draining = _samples(_stats(stopping=True, listener_connected=False))
    assert _value(draining, "pts_draining") == 1
    assert _value(draining, "pts_listener_connected") == 0


def test_histograms_are_written_with_cumulative_buckets_sum_and_count() -> None:
    flushes = Histogram((0.001, 0.01, 0.1))
    for seconds in (0.0005, 0.002, 0.003, 0.05, 3.0):
        flushes.observe(seconds)
    sizes = Distribution((64.0, 4096.0), (1, 2, 0), 4200.0)
    samples = _samples(_stats(flush_seconds=flushes.snapshot(), flush_bytes=sizes))
    buckets = {
        s.labels["le"]: s.value
        for s in samples["pts_flush_duration_seconds"]
        if s.name.endswith("_bucket")
    }
    assert buckets == {"0.001": 1, "0.01": 3, "0.1": 4, "+Inf": 5}
    assert _value(samples, "pts_flush_duration_seconds", "pts_flush_duration_seconds_count") == 5
    total = _value(samples, "pts_flush_duration_seconds", "pts_flush_duration_seconds_sum")
    assert total == pytest.approx(3.0555)
    assert _value(samples, "pts_flush_size_bytes", "pts_flush_size_bytes_count") == 3
    assert _value(samples, "pts_flush_size_bytes", "pts_flush_size_bytes_sum") == 4200
    empty = _value(samples, "pts_delivery_delay_seconds", "pts_delivery_delay_seconds_count")
    assert empty == 0


def test_names_follow_the_prometheus_conventions() -> None:
    """Prefixed ``pts_``; a unit in the name of whatever has one; counters get ``_total``
    from the format (so their names do not carry it); every one has a help text."""
    for spec in METRICS:
        assert re.fullmatch(r"pts_[a-z_]+", spec.name), spec.name
        assert not spec.name.endswith("_total"), spec.name
        assert spec.help.endswith("."), spec.name
        if spec.kind == "histogram":
            assert spec.name.endswith(("_seconds", "_bytes")), spec.name
    assert len({spec.name for spec in METRICS}) == len(METRICS)


def test_request_failures_are_counted_by_kind_and_start_with_none() -> None:
    counters = Counters()
    for kind in ("store_unavailable", "draining", "store_unavailable"):
        counters.request_failed(kind)
    counters.protocol_appended(100)
    counters.protocol_appended(0)  # a close without data is an append too
    assert counters.request_failures == {"store_unavailable": 2, "draining": 1}
    assert (counters.protocol_appends, counters.protocol_bytes) == (2, 100)
    none = _samples(_stats(request_failures={}))
    assert [s for s in none["pts_request_failures"] if s.name.endswith("_total")] == []


def test_the_collector_reads_the_component_at_scrape_time() -> None:
    pts = PersistentTextStreaming(store=MemoryStore())
    collector = PTSCollector(pts)
    pts.counters.flushed(120, 0.004)
    first = {f.name: f for f in collector.collect()}
    assert first["pts_appends"].samples[0].value == 1
    pts.counters.flushed(30, 0.002)
    second = {f.name: f for f in collector.collect()}
    assert second["pts_appends"].samples[0].value == 2
    assert second["pts_persisted_bytes"].samples[0].value == 150
    assert second["pts_open"].samples[0].value == 0  # never opened


def test_the_readme_shows_every_metric_with_a_query() -> None:
    """Operations → Metrics lists every metric, each with an example PromQL query."""
    text = README.read_text()
    start = text.index("### Metrics")
    section = text[start : text.index("\n## ", start)]
    for spec in METRICS:
        shown = spec.name + ("_total" if spec.kind == "counter" else "")
        rows = [line for line in section.splitlines() if f"`{shown}`" in line]
        assert rows, f"{shown} is not in the README's metrics table"
        assert any(line.count("`") >= 4 for line in rows), f"{shown} has no example query"


def test_metrics_without_prometheus_client_is_a_clear_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules: "import prometheus_client" raises ImportError, as when absent.
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    pts = PersistentTextStreaming(store=MemoryStore())
    with pytest.raises(ConfigurationError, match=re.escape("pip install 'pts[metrics]'")):
        PTSPlugin(pts, metrics=True)
    PTSPlugin(pts)  # without metrics, nothing needs it
    # pts serve: on by default only when it is installed; asked for, it must be.
    monkeypatch.delenv(METRICS_ENV, raising=False)
    assert metrics_from_env() is False
    monkeypatch.setenv(METRICS_ENV, "1")
    with pytest.raises(ConfigurationError, match=re.escape("pip install 'pts[metrics]'")):
        metrics_from_env()


def test_the_metrics_flag_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, expected in (("", True), ("auto", True), ("1", True), ("0", False), ("off", False)):
        monkeypatch.setenv(METRICS_ENV, raw)
        assert metrics_from_env() is expected, raw
    monkeypatch.setenv(METRICS_ENV, "sometimes")
    with pytest.raises(ConfigurationError, match=METRICS_ENV):
        metrics_from_env()

"""The standalone pts server (what ``pts serve`` runs): the plugin's routes, ``/healthz``
and ``/metrics``."""

from __future__ import annotations

import functools
import gc
import importlib.util
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Literal

from litestar import Litestar, get

from pts.core import PersistentTextStreaming
from pts.errors import ConfigurationError
from pts.http.access import Authorize, allow_everything
from pts.http.noauth import LoopbackGuard
from pts.http.plugin import METRICS_EXTRA, PTSPlugin
from pts.settings import Settings

__all__ = [
    "CORS_ORIGINS_ENV",
    "DEFAULT_GC_THRESHOLD",
    "DEFAULT_LONG_POLL_TIMEOUT",
    "GC_THRESHOLD_ENV",
    "LONG_POLL_TIMEOUT_ENV",
    "METRICS_ENV",
    "NO_AUTH_ENV",
    "NO_AUTH_WARNED_ENV",
    "cors_origins_from_env",
    "create_app",
    "freeze_gc",
    "gc_startup_hooks",
    "gc_threshold_from_env",
    "healthz",
    "long_poll_timeout_from_env",
    "metrics_from_env",
    "no_auth_from_env",
    "raise_gc_threshold",
]

logger = logging.getLogger("pts.app")

NO_AUTH_ENV = "PTS_NO_AUTH"
"""``1`` (``true``, ``yes``, ``on``): :func:`create_app` allows every request (``--no-auth``)."""

LONG_POLL_TIMEOUT_ENV = "PTS_LONG_POLL_TIMEOUT"
"""Seconds a Durable Streams long-poll waits for data (``pts serve --long-poll-timeout``)."""

DEFAULT_LONG_POLL_TIMEOUT = 30.0

NO_AUTH_WARNED_ENV = "PTS_NO_AUTH_WARNED"
"""Set to ``1`` by ``pts serve --no-auth``, which warned once already: workers do not repeat it."""

METRICS_ENV = "PTS_METRICS"
"""``1``: serve ``/metrics`` (``pts serve --metrics``); ``0``: not (``--no-metrics``);
unset or ``auto``: serve it when prometheus-client is installed."""

GC_THRESHOLD_ENV = "PTS_GC_THRESHOLD"
"""Allocations between two collections of the garbage collector's youngest generation
(:func:`raise_gc_threshold`; Python's own is 700)."""

DEFAULT_GC_THRESHOLD = 50_000
_INT32_MAX = 2**31 - 1

CORS_ORIGINS_ENV = "PTS_CORS_ORIGINS"
"""Browser origins allowed (``pts serve --cors-origin``), comma or space separated."""

# The spellings click accepts for ``pts serve --no-auth``'s environment variable.
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "f", "no", "n", "off"})


def freeze_gc() -> None:
    """Move everything allocated at startup out of the garbage collector's sight.

    A server's startup objects (modules, routes, schemas) live forever; without
    this, every full collection walks them again, and on a busy server those
    pauses (over 100 ms measured here) land on the subscribers' latency.
    """
    gc.collect()
    gc.freeze()


def raise_gc_threshold(threshold: int = DEFAULT_GC_THRESHOLD) -> None:
    """Collect the garbage collector's youngest generation every ``threshold``
    allocations instead of Python's 700 (the older generations' thresholds stay).

    Python starts a collection when the allocations of tracked objects, minus
    their deallocations, pass the threshold; the collection then walks every
    object of the generation. A flush to many subscribers wakes each one's
    task, which frees the dozen small objects of its last wait (a future, a
    timer, its generators' frames) and makes new ones: the count hardly moves,
    while the young generation fills with them. At 3,000 subscribers it held
    about 40,000 objects at each collection, which took 10 to 30 ms, and their
    survivors made full collections of 350 ms: p99 past 100 ms at 3,500
    subscribers. With 50,000, no collection ran during a 20 s fan-out to 4,000
    subscribers (``pts bench fanout``). Garbage in reference cycles waits a
    little longer to be freed, a few megabytes at most.
    """
    if not _is_gc_threshold(threshold):
        raise ConfigurationError(f"the garbage collector's threshold must be 1 to {_INT32_MAX:,}")
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


def _is_gc_threshold(value: int) -> bool:
    return 1 <= value <= _INT32_MAX  # what the collector's C counter holds


def gc_startup_hooks() -> list[Callable[[], None]]:
    """What ``pts serve``'s app runs at startup for the garbage collector:
    :func:`freeze_gc`, then :func:`raise_gc_threshold` to ``PTS_GC_THRESHOLD``
    (read now: ConfigurationError if malformed)."""
    return [freeze_gc, functools.partial(raise_gc_threshold, gc_threshold_from_env())]


def gc_threshold_from_env() -> int:
    """``PTS_GC_THRESHOLD`` (default 50,000); ConfigurationError unless a whole number
    from 1 to 2,147,483,647."""
    raw = os.environ.get(GC_THRESHOLD_ENV, "").strip()
    if not raw:
        return DEFAULT_GC_THRESHOLD
    if not re.fullmatch(r"[0-9]{1,10}", raw) or not _is_gc_threshold(int(raw)):
        raise ConfigurationError(
            f"{GC_THRESHOLD_ENV}={raw!r} is not a whole number from 1 to {_INT32_MAX:,} "
            "(Python's own threshold is 700)"
        )
    return int(raw)


@get("/healthz", sync_to_thread=False, include_in_schema=False)
def healthz() -> dict[str, bool]:
    """Liveness: the app is up (its lifespan, which opens the pool, has completed)."""
    return {"ok": True}


def no_auth_from_env() -> bool:
    """``PTS_NO_AUTH`` as a flag (unset or empty: False); ConfigurationError if malformed."""
    raw = os.environ.get(NO_AUTH_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(
        f"{NO_AUTH_ENV}={os.environ[NO_AUTH_ENV]!r} is not a flag: use 1 or 0 (true/false)"
    )


def metrics_from_env() -> bool:
    """``PTS_METRICS`` as a flag; unset or ``auto``: whether prometheus-client is installed.

    ConfigurationError if malformed, or ``1`` without prometheus-client.
    """
    raw = os.environ.get(METRICS_ENV, "").strip().lower()
    installed = importlib.util.find_spec("prometheus_client") is not None
    if raw in ("", "auto"):
        if not installed:
            logger.info("no /metrics: prometheus-client is not installed (%s)", METRICS_EXTRA)
        return installed
    if raw not in _TRUE | _FALSE:
        raise ConfigurationError(f"{METRICS_ENV}={raw!r} is not a flag: use 1, 0 or auto")
    if raw in _TRUE and not installed:
        raise ConfigurationError(f"metrics need the prometheus-client package: {METRICS_EXTRA}")
    return raw in _TRUE


def long_poll_timeout_from_env() -> float:
    """``PTS_LONG_POLL_TIMEOUT`` in seconds (default 30); ConfigurationError unless > 0."""
    raw = os.environ.get(LONG_POLL_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LONG_POLL_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    # isfinite: "nan" and "inf" parse as floats but are no timeout.
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigurationError(
            f"{LONG_POLL_TIMEOUT_ENV}={raw!r} is not a positive number of seconds"
        )
    return seconds


def cors_origins_from_env() -> tuple[str, ...] | None:
    """``PTS_CORS_ORIGINS`` as a tuple of origins (``*``: any); None if unset or empty."""
    raw = os.environ.get(CORS_ORIGINS_ENV, "")
    origins = tuple(origin for origin in re.split(r"[\s,]+", raw) if origin)
    for origin in origins:
        # An origin is scheme://host[:port]: a path or a trailing slash never matches one.
        if origin != "*" and (
            not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+", origin) or origin != origin.lower()
        ):
            raise ConfigurationError(
                f"{CORS_ORIGINS_ENV}: {origin!r} is not an origin (scheme://host[:port], "
                "lower case, no path) nor *"
            )
    return origins or None


def create_app(
    pts: PersistentTextStreaming | None = None,
    *,
    authorize: Authorize | None = None,
    debug: bool = False,
    no_auth: bool | None = None,
    long_poll_timeout: float | None = None,
    cors_origins: Sequence[str] | None = None,
    metrics: bool | None = None,
) -> Litestar:
    """A Litestar app serving pts: :class:`~pts.plugin.PTSPlugin` at ``/streams``, ``/healthz``
    and ``/metrics``.

    With no ``pts``, one is built from the environment (``PTS_DATABASE_URL`` /
    ``DATABASE_URL``, else the embedded Postgres; ``PTS_DRIVER``). Without
    ``authorize``, only ``Authorization: Bearer $PTS_ADMIN_TOKEN`` is allowed.
    Called with no arguments, it is the app factory ``pts serve`` gives uvicorn,
    which passes its options through the environment (read here because every
    worker process calls this factory):

    ========================== ==================================================
    ``PTS_NO_AUTH``            ``1``: no access control at all, every request is
                               allowed (``no_auth``; default ``0``). For local
                               development and tests only: ``pts serve
                               --no-auth`` binds loopback addresses only.
    ``PTS_LONG_POLL_TIMEOUT``  seconds a Durable Streams long-poll waits for
                               data before answering 204 (``long_poll_timeout``;
                               default 30).
    ``PTS_CORS_ORIGINS``       browser origins allowed (``cors_origins``; comma or
                               space separated; ``*``: any). Unset: any origin
                               (``*``, the protocol's default) with access
                               control; with ``--no-auth``, none but loopback
                               pages, which get no CORS headers.
    ``PTS_METRICS``            ``1``: serve ``GET /metrics`` (Prometheus;
                               ``metrics``), ``0``: not; unset or ``auto``
                               (default): when prometheus-client is installed.
                               It has no access check: see the README.
    ``PTS_GC_THRESHOLD``       allocations between two collections of the
                               garbage collector's youngest generation, set at
                               startup (default 50,000; Python's 700: see
                               :func:`raise_gc_threshold`).
    ========================== ==================================================

    Without access control, every request must name a loopback ``Host``
    (``localhost``, ``127.0.0.1``, ``[::1]``; against DNS rebinding) and carry
    no ``Origin`` but a loopback one or one of ``cors_origins``: 403 otherwise,
    before any route runs (see :mod:`pts.http.noauth`).

    Explicit arguments win over the environment. Raises ConfigurationError for
    a malformed variable, or for ``no_auth`` together with ``authorize``.
    """
    if no_auth is None:
        no_auth = no_auth_from_env()
    if long_poll_timeout is None:
        long_poll_timeout = long_poll_timeout_from_env()
    if cors_origins is None:
        cors_origins = cors_origins_from_env()
    if metrics is None:
        metrics = metrics_from_env()
    on_startup = gc_startup_hooks()
    middleware: list[LoopbackGuard] = []
    # With access control, CORS is the protocol's ("*": no cookies are involved).
    cors: Sequence[str] | Literal["*"] | None = "*" if cors_origins is None else cors_origins
    if no_auth:
        if authorize is not None:
            raise ConfigurationError("no_auth and an authorize hook exclude each other")
        if os.environ.get(NO_AUTH_WARNED_ENV) != "1":
            logger.warning("no access control (%s=1): every request is allowed", NO_AUTH_ENV)
        authorize = allow_everything
        middleware.append(LoopbackGuard(cors_origins or ()))
        cors = cors_origins or None
    if cors is not None and "*" in cors:
        cors = "*"
    if pts is None:
        pts = PersistentTextStreaming(driver=Settings.from_env().driver)
    plugin = PTSPlugin(
        pts,
        authorize=authorize,
        long_poll_timeout=long_poll_timeout,
        cors_origins=cors,
        metrics=metrics,
    )
    return Litestar(
        route_handlers=[healthz],
        plugins=[plugin],
        middleware=middleware,
        on_startup=on_startup,
        debug=debug,
    )

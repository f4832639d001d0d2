"""Logging what clients control, and what repeats: escaped values, throttled outage warnings.

- :func:`safe` escapes control characters (a ``%0a`` in a path would
  otherwise start a forged log line) and shortens long values.
- :class:`Throttle` lets one record per key through per interval and counts
  the rest: during a database outage every request fails the same way, and
  hundreds of identical tracebacks a second bury everything else.
- :func:`log_request_failure` is how a failed request (5xx) is logged: the
  store being unavailable as a throttled warning without a traceback (its
  cause is outside pts and says the same each time), anything else once as an
  error with its traceback.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Hashable

from pts.errors import StoreUnavailable

__all__ = [
    "OUTAGE_LOG_INTERVAL",
    "Throttle",
    "log_request_failure",
    "outage_throttle",
    "safe",
    "warn_throttled",
]

OUTAGE_LOG_INTERVAL = 10.0
"""Seconds between two log records of one kind of repeated failure (a database outage)."""

SAFE_LIMIT = 300
"""Characters of a client-controlled value kept in a log message."""

# C0 and C1 controls, DEL, line and paragraph separators, bidirectional
# overrides (which reorder how a line reads), and the backslash itself, so
# that an escape in the log always means an escaped character.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\\\\]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe(value: object, limit: int = SAFE_LIMIT) -> str:
    """``value`` as text fit for one log line: control characters escaped, at most ``limit`` kept.

    For anything a client controls (paths, ids, headers, reasons) and for
    exception messages, which may quote them.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text)} characters)"
    return _UNSAFE.sub(_escape, text)


class Throttle:
    """At most one log record per key every ``interval`` seconds; the others are counted.

    :param interval: seconds between two records of one key.
    :param clock: monotonic seconds (a parameter for tests).
    """

    def __init__(
        self, interval: float = OUTAGE_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()  # routes may run in worker threads (sync_to_thread)
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def admit(self, key: Hashable) -> int | None:
        """None if a record of ``key`` must be dropped now; else how many were dropped before it."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)


outage_throttle = Throttle()
"""The process's throttle for repeated failures (keys: the logger's name and a kind)."""


def warn_throttled(
    logger: logging.Logger,
    kind: str,
    message: str,
    *args: object,
    throttle: Throttle | None = None,
    stacklevel: int = 1,
) -> None:
    """``logger.warning(message, *args)``, at most once per interval per logger and ``kind``.

    The record after a quiet spell says how many like it were left out.
    ``stacklevel`` as for :meth:`logging.Logger.warning` (1: the caller's line).
    """
    throttle = outage_throttle if throttle is None else throttle
    suppressed = throttle.admit((logger.name, kind))
    if suppressed is None:
        return
    if suppressed:
        message += " (and %d more like it not logged, at most one every %g s)"
        args = (*args, suppressed, throttle.interval)
    logger.warning(message, *args, stacklevel=stacklevel + 1)


def log_request_failure(logger: logging.Logger, method: str, path: str, exc: BaseException) -> None:
    """Log a request the server failed (5xx), escaped: the store unavailable throttled, else once.

    :class:`~pts.errors.StoreUnavailable` becomes a throttled warning without a
    traceback; any other error an error record with its traceback.
    """
    if isinstance(exc, StoreUnavailable):
        warn_throttled(
            logger,
            "store_unavailable",
            "%s %s failed: %s",
            safe(method),
            safe(path),
            safe(exc),
            stacklevel=2,  # the record names the caller's line, not this one
        )
    else:
        logger.error(
            "%s %s failed: %s", safe(method), safe(path), safe(exc), exc_info=exc, stacklevel=2
        )

"""How ``pts serve`` holds connections: a deadline for request heads, idle and concurrency limits.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``), but
only once a response has completed: a connection that sends nothing, or half
a request head, and then waits, is never closed (its keep-alive timer is not
armed before the first response, and is cancelled by any byte received). A
thousand such connections cost the attacker nothing and the server a file
descriptor and a protocol object each, forever. :class:`HeaderTimeoutProtocol`
closes every connection whose request head (request line and headers) is not
complete within ``header_timeout`` seconds of the connection, or of the first
byte of the next request on a kept-alive one.

The body is not covered (a route reads it at its own pace, within
``max_body_size``), nor are responses (SSE and long-polls are long by design).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_LIMIT_CONCURRENCY",
    "DEFAULT_TIMEOUT_KEEP_ALIVE",
    "FILES_BESIDES_CONNECTIONS",
    "HEADER_TIMEOUT_ENV",
    "LIMIT_CONCURRENCY_ENV",
    "TIMEOUT_KEEP_ALIVE_ENV",
    "HeaderTimeoutProtocol",
    "header_timeout_protocol",
    "raise_open_file_limit",
]

HEADER_TIMEOUT_ENV = "PTS_HEADER_TIMEOUT"
"""Seconds a client has to send a request's head (``pts serve --header-timeout``)."""

TIMEOUT_KEEP_ALIVE_ENV = "PTS_TIMEOUT_KEEP_ALIVE"
"""Seconds an idle keep-alive connection stays open (``pts serve --timeout-keep-alive``)."""

LIMIT_CONCURRENCY_ENV = "PTS_LIMIT_CONCURRENCY"
"""Connections (or running requests) per worker past which requests get 503."""

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_TIMEOUT_KEEP_ALIVE = 5  # uvicorn's own default
# Comfortably above the 3,000 subscribers one process was measured to hold
# (SSE and long-poll connections count for as long as they last).
DEFAULT_LIMIT_CONCURRENCY = 10_000

FILES_BESIDES_CONNECTIONS = 256
"""Open files a worker needs besides its connections (pool, listener, modules, logs)."""


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request head is late.

    :param header_timeout: seconds from the connection (or from the first byte
        of a further request on it) until its request head must be complete.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = header_timeout
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A new connection's deadline already runs (from the connection, not
        # from its first byte); a kept-alive one starts its next request here.
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_late)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def header_timeout_protocol(header_timeout: float) -> Callable[..., HeaderTimeoutProtocol]:
    """What to pass uvicorn as ``http=``: :class:`HeaderTimeoutProtocol` with this timeout.

    A partial of a module-level class, so that it pickles into worker processes.
    """
    if not header_timeout > 0:
        raise ValueError("header_timeout must be positive")
    return functools.partial(HeaderTimeoutProtocol, header_timeout=header_timeout)


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (never past the hard one).

    Every connection is a file descriptor: a soft limit of 1,024 (a common
    default) would fail ``accept()`` long before ``limit_concurrency``. Worker
    processes inherit the limit. Returns the soft limit now in force (``wanted``
    where the platform has no such limit).
    """
    try:
        import resource
    except ImportError:  # not on this platform (Windows)
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return wanted if soft == resource.RLIM_INFINITY else soft

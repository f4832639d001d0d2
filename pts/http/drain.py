"""Draining on SIGTERM under a server that is not pts's own (plain uvicorn, ``--workers N``).

``pts serve`` (one worker) and ``pts demo`` run :mod:`pts.http.shutdown`, which
drains on SIGTERM itself. Any other uvicorn, such as the workers of
``pts serve --workers N`` or an app of yours under ``uvicorn``, stops on
SIGTERM by waiting for every open response, and an SSE subscriber never ends.
So the plugin, at startup, puts itself in front of the server's own SIGTERM
handler: on SIGTERM it begins the component's drain (new drives refused,
subscriptions ended, generations given ``drain_timeout`` at shutdown), then
hands the signal on to the server.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import threading
from collections.abc import Callable
from types import FrameType

from pts.core import PersistentTextStreaming

__all__ = ["follow_sigterm"]


def follow_sigterm(pts: PersistentTextStreaming) -> Callable[[], None]:
    """Begin ``pts``'s drain on SIGTERM, before the server's own handler runs.

    Only when a server installed a Python handler for SIGTERM (uvicorn does;
    a bare test client does not, and then nothing changes) and only in the
    main thread (the only one signal handlers may be set from). Returns the
    function that puts the server's handler back.
    """
    if threading.current_thread() is not threading.main_thread():
        return _nothing
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return _nothing
    loop = asyncio.get_running_loop()
    begin = functools.partial(pts.begin_stopping, drain=True)

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        # A signal handler may not touch the loop's state: hand over to it.
        if not loop.is_closed():
            loop.call_soon_threadsafe(begin)
        previous(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return restore


def _nothing() -> None:
    return None

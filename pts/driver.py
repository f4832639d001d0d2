"""The old path of :mod:`pts.driving`, kept so that existing imports go on working.

``pts.driver`` was renamed ``pts.driving``: "driver" also names the database
driver (asyncpg, psycopg). New code imports ``Append`` and ``StreamWriter``
from :mod:`pts`, and the rest from :mod:`pts.driving`.
"""

from __future__ import annotations

from pts.driving import (
    SHUTDOWN_MESSAGE,
    YIELD_INTERVAL,
    AnyRequest,
    Append,
    Drive,
    Generate,
    TextStream,
    driving_response,
    keep_body,
)
from pts.writing import StreamWriter

__all__ = [
    "SHUTDOWN_MESSAGE",
    "YIELD_INTERVAL",
    "AnyRequest",
    "Append",
    "Drive",
    "Generate",
    "StreamWriter",
    "TextStream",
    "driving_response",
    "keep_body",
]

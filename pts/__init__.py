"""pts: persistent text streaming on Postgres.

Stream an LLM answer token by token to the browser that asked for it, persist
it to Postgres on sentence boundaries, and let every other viewer subscribe.
"""

from __future__ import annotations

from pts.errors import (
    ClientIdTaken,
    ConfigurationError,
    InvalidInput,
    InvalidOffset,
    InvalidTransition,
    OffsetConflict,
    PathTaken,
    PTSError,
    StoreUnavailable,
    StreamClosed,
    StreamConflict,
    StreamNotFound,
)
from pts.models import ReadResult, StreamInfo, StreamStatus
from pts.settings import Settings
from pts.store import Store, create_store
from pts.store.sync import SyncStore

__all__ = [
    "ClientIdTaken",
    "ConfigurationError",
    "InvalidInput",
    "InvalidOffset",
    "InvalidTransition",
    "OffsetConflict",
    "PTSError",
    "PathTaken",
    "ReadResult",
    "Settings",
    "Store",
    "StoreUnavailable",
    "StreamClosed",
    "StreamConflict",
    "StreamInfo",
    "StreamNotFound",
    "StreamStatus",
    "SyncStore",
    "create_store",
]

"""pts: persistent text streaming on Postgres.

Stream an LLM answer token by token to the browser that asked for it, persist
it to Postgres on sentence boundaries, and let every other viewer subscribe.
"""

from __future__ import annotations

from pts.core import PersistentTextStreaming
from pts.driving import SHUTDOWN_MESSAGE, Append, Generate
from pts.errors import (
    AlreadyDriven,
    ClientIdTaken,
    ConfigurationError,
    Draining,
    InvalidChunk,
    InvalidInput,
    InvalidOffset,
    InvalidTransition,
    NotAUIStream,
    OffsetConflict,
    PathTaken,
    PersistenceFailed,
    PTSError,
    SchemaNotMigrated,
    StoreUnavailable,
    StreamClosed,
    StreamConflict,
    StreamDeleted,
    StreamNotFound,
    StreamTooLarge,
)
from pts.flush import FlushPolicy
from pts.http.access import Action, Authorize, Forbidden, Unauthorized, allow_everything
from pts.http.plugin import PTSPlugin
from pts.live.subscribe import Update
from pts.models import ReadParts, ReadResult, StreamBody, StreamInfo, StreamStatus
from pts.settings import Settings
from pts.stats import LiveStream, Stats
from pts.store import Store, create_store
from pts.store.sync import SyncStore
from pts.writing import StreamWriter

__all__ = [
    "SHUTDOWN_MESSAGE",
    "Action",
    "AlreadyDriven",
    "Append",
    "Authorize",
    "ClientIdTaken",
    "ConfigurationError",
    "Draining",
    "FlushPolicy",
    "Forbidden",
    "Generate",
    "InvalidChunk",
    "InvalidInput",
    "InvalidOffset",
    "InvalidTransition",
    "LiveStream",
    "NotAUIStream",
    "OffsetConflict",
    "PTSError",
    "PTSPlugin",
    "PathTaken",
    "PersistenceFailed",
    "PersistentTextStreaming",
    "ReadParts",
    "ReadResult",
    "SchemaNotMigrated",
    "Settings",
    "Stats",
    "Store",
    "StoreUnavailable",
    "StreamBody",
    "StreamClosed",
    "StreamConflict",
    "StreamDeleted",
    "StreamInfo",
    "StreamNotFound",
    "StreamStatus",
    "StreamTooLarge",
    "StreamWriter",
    "SyncStore",
    "Unauthorized",
    "Update",
    "allow_everything",
    "create_store",
]

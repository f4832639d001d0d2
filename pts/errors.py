"""Typed errors raised by pts. The web layer maps each to one HTTP status.

The table from error to status and ``"error"`` kind is :data:`pts.http.errors.ERRORS`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping


class PTSError(Exception):
    """Base class of every error pts raises on purpose."""


class ConfigurationError(PTSError):
    """A setting is missing or malformed (an environment variable, a DSN, a driver name)."""


class SchemaNotMigrated(ConfigurationError):
    """The database lacks the pts schema, or a migration this code needs (run ``pts migrate``).

    Raised when pts opens with migration off, so that an app fails at startup
    with one line saying what to run, never at its first request.
    """


class InvalidInput(PTSError, ValueError):
    """An argument is malformed: an empty append, a negative size, an unknown status."""


class InvalidOffset(InvalidInput):
    """A byte offset is negative or beyond the end of the stream."""

    def __init__(self, stream_id: uuid.UUID, offset: int, size: int) -> None:
        self.stream_id = stream_id
        self.offset = offset
        self.size = size
        super().__init__(f"offset {offset} is outside stream {stream_id} (size {size} bytes)")


class StreamNotFound(PTSError, LookupError):
    """No stream has this id (or client id, or path)."""

    def __init__(self, key: uuid.UUID | str, detail: str | None = None) -> None:
        self.key = key
        super().__init__(detail or f"stream {key} not found")


class StreamDeleted(PTSError):
    """The stream was deleted, but forks still read its bytes (the protocol's 410)."""


class StreamConflict(PTSError):
    """The request conflicts with the stream's current state."""


class ClientIdTaken(StreamConflict):
    """Another stream already has this client id (one writer per client id)."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"client id {client_id!r} is already taken by another stream")


class PathTaken(StreamConflict):
    """Another stream already has this path."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"path {path!r} is already taken by another stream")


class OffsetConflict(StreamConflict):
    """An append named an offset other than the stream's current size.

    Another writer appended first; nothing of this append was stored.
    """

    def __init__(self, stream_id: uuid.UUID, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"append to stream {stream_id} expected offset {expected}, "
            f"but the stream is at {actual}"
        )


class StreamClosed(StreamConflict):
    """The stream is closed (finished): it takes no more appends."""

    def __init__(self, stream_id: uuid.UUID, status: str) -> None:
        self.stream_id = stream_id
        self.status = status
        super().__init__(f"stream {stream_id} is closed (status {status}); it takes no more text")


class InvalidTransition(StreamConflict):
    """A status change the lifecycle forbids, such as reopening a finished stream."""

    def __init__(self, stream_id: uuid.UUID, current: str, target: str, size: int) -> None:
        self.stream_id = stream_id
        self.current = current
        self.target = target
        self.size = size
        super().__init__(f"stream {stream_id} is {current}; it cannot become {target}")


class AlreadyDriven(InvalidTransition):
    """``stream()`` was called for a stream that is already driven or finished.

    Only one driver runs per stream (a double submit, a second tab): the
    client should subscribe to the stream instead.
    """

    def __init__(self, stream_id: uuid.UUID, current: str, size: int) -> None:
        super().__init__(stream_id, current, "streaming", size)
        self.args = (
            f"stream {stream_id} is already {current} ({size} bytes); subscribe to it instead",
        )


class StreamTooLarge(PTSError):
    """An append would take the stream past its size cap (``max_stream_size``).

    Nothing of that append was stored; the stream keeps what it had. A driven
    stream then ends ``error`` with this message.
    """

    def __init__(self, stream: uuid.UUID | str, size: int, adding: int, limit: int) -> None:
        self.stream = stream
        self.size = size
        self.adding = adding
        self.limit = limit
        super().__init__(
            f"stream {stream} holds {size} bytes; appending {adding} more would pass "
            f"its cap of {limit} bytes"
        )


class StoreUnavailable(PTSError):
    """The database could not be reached or dropped the connection.

    The operation may or may not have been applied; callers that retry must
    use offsets (appends do) so that a retry cannot duplicate data.
    """


class Draining(PTSError):
    """A new answer was asked of a server that is draining (SIGTERM: a rolling deploy).

    Answered 503 ``draining`` with ``Retry-After``, so that a load balancer or
    the client tries another node; the stream is left ``pending`` for it.
    """

    retry_after: int = 1
    """Seconds the client should wait before it retries (on another node)."""

    def __init__(self, stream_id: uuid.UUID) -> None:
        super().__init__(
            f"this server is shutting down and starts no new answer; "
            f"retry stream {stream_id} on another node"
        )
        self.stream_id = stream_id


class PersistenceFailed(PTSError):
    """Text could not be persisted: the database stayed unreachable past the outage limit.

    The stream ends with status ``error`` (once the database is back) and the
    driving client's response is cut off, so it knows the answer is incomplete.
    """


# -- AI SDK UI message streams (pts.ui) ------------------------------------------------------


class InvalidChunk(InvalidInput):
    """A UI message chunk ``generate`` wrote is not one the AI SDK reads (400 ``invalid_chunk``).

    Not a JSON object, an unknown ``type`` (without the ``data-`` prefix), a
    required field missing or of the wrong type, or not standard JSON. Nothing
    of it was sent or stored.
    """


class NotAUIStream(StreamConflict):
    """``stream_ui``/``resume_ui`` on a stream whose content type is not ``application/json``
    (409 ``not_a_ui_stream``): UI message chunks are JSON messages, and the stream's
    content type is fixed when it is created (create it with
    ``create_stream(content_type="application/json")``)."""

    def __init__(self, stream_id: uuid.UUID, content_type: str) -> None:
        self.stream_id = stream_id
        self.content_type = content_type
        super().__init__(
            f"stream {stream_id} has content type {content_type!r}, not application/json: "
            "a UI message stream is created with create_stream(content_type='application/json')"
        )


# -- the Durable Streams protocol (pts.http.durable) ----------------------------------------


class BadRequest(InvalidInput):
    """A malformed protocol request (400 ``bad_request``)."""


class ProtocolError(PTSError):
    """A request the Durable Streams protocol refuses in its own words.

    ``headers`` are the response headers the protocol asks for beside the
    status (``Allow``, ``Producer-Epoch``, ``Stream-Next-Offset``...).
    """

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.headers: dict[str, str] = dict(headers or {})


class MethodNotAllowed(ProtocolError):
    """The method is not one the path takes (405; ``headers`` has ``Allow``)."""


class ReservedPath(ProtocolError):
    """The path is under ``__ds/``, which the protocol reserves (404 ``reserved``)."""


class BodyTooLarge(ProtocolError):
    """The request body is over the protocol's ``max_body_size`` (413)."""


class ClientDisconnected(ProtocolError):
    """The client went away before its request body arrived (400 ``disconnected``)."""


class ContentTypeMismatch(ProtocolError):
    """An append's (or a fork's) content type is not the stream's (409)."""


class StreamExists(ProtocolError):
    """A create names an existing stream with another configuration (409)."""


class DeletedStreamConflict(ProtocolError):
    """A create (or fork) names a stream deleted while forks still hold it (409 ``stream_deleted``).

    Unlike :class:`StreamDeleted` (a read's 410), the request conflicts with that state.
    """


class StreamDriven(ProtocolError):
    """An append names a pts stream, which its driver writes (409 ``already_driven``)."""


class AppendToClosed(ProtocolError):
    """An append to a closed stream (409 ``stream_closed``; ``Stream-Closed`` and its offset)."""


class StaleProducerEpoch(ProtocolError):
    """A producer's epoch is older than the stream's (403; ``Producer-Epoch`` has the current)."""


class ProducerSeqGap(ProtocolError):
    """A producer skipped sequence numbers (409; the expected and received ``Producer-Seq``)."""


class StreamSeqConflict(ProtocolError):
    """``Stream-Seq`` is not after the stream's last one (409)."""


class DurableStreamsNotSupported(ConfigurationError, NotImplementedError):
    """The in-memory store (:mod:`pts.testing`) does not serve the Durable Streams protocol.

    A limit of the store the app was configured with (501 ``not_implemented``).
    """

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"the in-memory store does not serve the Durable Streams protocol ({operation}); "
            "use a Postgres store for it"
        )

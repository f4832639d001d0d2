"""The one table from pts errors to HTTP: status, ``"error"`` kind, JSON body, headers.

Both route sets answer with it: the plugin's routes (and every handler of an
app with the plugin) through :func:`error_response`, the Durable Streams app
through :func:`exception_content`. A new :class:`~pts.errors.PTSError` subclass
gets an entry here (``tests/test_architecture.py`` checks that each has one).

Looked up along the exception's MRO: a subclass without an entry of its own
gets its nearest listed base's (the table says which subclasses rely on that).
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_405_METHOD_NOT_ALLOWED,
    HTTP_409_CONFLICT,
    HTTP_410_GONE,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_501_NOT_IMPLEMENTED,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from pts.errors import (
    AlreadyDriven,
    AppendToClosed,
    BadRequest,
    BodyTooLarge,
    ClientDisconnected,
    ClientIdTaken,
    ConfigurationError,
    ContentTypeMismatch,
    DeletedStreamConflict,
    Draining,
    DurableStreamsNotSupported,
    InvalidChunk,
    InvalidInput,
    InvalidOffset,
    InvalidTransition,
    MethodNotAllowed,
    NotAUIStream,
    OffsetConflict,
    PathTaken,
    PersistenceFailed,
    ProducerSeqGap,
    ProtocolError,
    PTSError,
    ReservedPath,
    SchemaNotMigrated,
    StaleProducerEpoch,
    StoreUnavailable,
    StreamClosed,
    StreamConflict,
    StreamDeleted,
    StreamDriven,
    StreamExists,
    StreamNotFound,
    StreamSeqConflict,
    StreamTooLarge,
)
from pts.http.access import Forbidden, Unauthorized
from pts.logsafe import log_request_failure

__all__ = [
    "ERRORS",
    "INHERITED",
    "error_content",
    "error_response",
    "error_status",
    "exception_content",
    "internal_error_content",
    "internal_error_response",
    "is_logged",
]

INTERNAL_DETAIL = "internal error; the server log has the details"
"""A 500's detail outside debug mode (its message may quote settings or data)."""

AnyRequest: TypeAlias = Request[Any, Any, Any]

logger = logging.getLogger("pts.plugin")  # the plugin's routes' name, as before the move

ERRORS: dict[type[PTSError], tuple[int, str]] = {
    StreamNotFound: (HTTP_404_NOT_FOUND, "stream_not_found"),
    InvalidOffset: (HTTP_400_BAD_REQUEST, "invalid_offset"),
    InvalidChunk: (HTTP_400_BAD_REQUEST, "invalid_chunk"),
    InvalidInput: (HTTP_400_BAD_REQUEST, "invalid_input"),
    ClientIdTaken: (HTTP_409_CONFLICT, "client_id_taken"),
    PathTaken: (HTTP_409_CONFLICT, "path_taken"),
    OffsetConflict: (HTTP_409_CONFLICT, "offset_conflict"),
    StreamClosed: (HTTP_409_CONFLICT, "stream_closed"),
    AlreadyDriven: (HTTP_409_CONFLICT, "already_driven"),
    InvalidTransition: (HTTP_409_CONFLICT, "invalid_transition"),
    NotAUIStream: (HTTP_409_CONFLICT, "not_a_ui_stream"),
    StreamConflict: (HTTP_409_CONFLICT, "stream_conflict"),
    StreamDeleted: (HTTP_410_GONE, "stream_deleted"),
    StreamTooLarge: (HTTP_413_REQUEST_ENTITY_TOO_LARGE, "stream_too_large"),
    StoreUnavailable: (HTTP_503_SERVICE_UNAVAILABLE, "store_unavailable"),
    PersistenceFailed: (HTTP_503_SERVICE_UNAVAILABLE, "persistence_failed"),
    Draining: (HTTP_503_SERVICE_UNAVAILABLE, "draining"),
    SchemaNotMigrated: (HTTP_500_INTERNAL_SERVER_ERROR, "schema_not_migrated"),
    ConfigurationError: (HTTP_500_INTERNAL_SERVER_ERROR, "configuration_error"),
    DurableStreamsNotSupported: (HTTP_501_NOT_IMPLEMENTED, "not_implemented"),
    Unauthorized: (HTTP_401_UNAUTHORIZED, "unauthorized"),
    Forbidden: (HTTP_403_FORBIDDEN, "forbidden"),
    # The Durable Streams protocol's own refusals (pts.http.durable).
    BadRequest: (HTTP_400_BAD_REQUEST, "bad_request"),
    ClientDisconnected: (HTTP_400_BAD_REQUEST, "disconnected"),
    ReservedPath: (HTTP_404_NOT_FOUND, "reserved"),
    MethodNotAllowed: (HTTP_405_METHOD_NOT_ALLOWED, "method_not_allowed"),
    StaleProducerEpoch: (HTTP_403_FORBIDDEN, "stale_producer_epoch"),
    StreamDriven: (HTTP_409_CONFLICT, "already_driven"),
    AppendToClosed: (HTTP_409_CONFLICT, "stream_closed"),
    ContentTypeMismatch: (HTTP_409_CONFLICT, "content_type_mismatch"),
    StreamExists: (HTTP_409_CONFLICT, "stream_exists"),
    DeletedStreamConflict: (HTTP_409_CONFLICT, "stream_deleted"),
    ProducerSeqGap: (HTTP_409_CONFLICT, "producer_seq_gap"),
    StreamSeqConflict: (HTTP_409_CONFLICT, "stream_seq_conflict"),
    BodyTooLarge: (HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body_too_large"),
    PTSError: (HTTP_500_INTERNAL_SERVER_ERROR, "internal_error"),
}
"""``PTSError`` subclass → (HTTP status, ``"error"`` kind)."""

INHERITED: frozenset[type[PTSError]] = frozenset({ProtocolError})
"""Classes that deliberately have no entry of their own: bases that are never raised
as such (``ProtocolError`` only groups the protocol's refusals and their headers;
raised bare, it would be the 500 of ``PTSError``, a bug)."""


def error_status(exc: PTSError) -> tuple[int, str]:
    """The HTTP status and ``"error"`` kind of a pts error (the table above)."""
    return next(ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS)


def error_content(exc: PTSError, *, debug: bool) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, JSON body and headers that answer ``exc``.

    The body is ``{"error": kind, "detail": message}``;
    :class:`~pts.errors.InvalidTransition` adds the stream's ``status`` and
    ``size``. Headers: 401 adds ``WWW-Authenticate: Bearer``, a draining
    server's 503 ``Retry-After``, a protocol error its own. A 500's detail
    shows its message only in ``debug`` (it may quote settings), else it
    points at the server log.
    """
    status_code, kind = error_status(exc)
    detail = str(exc) or kind.replace("_", " ")
    if status_code == HTTP_500_INTERNAL_SERVER_ERROR and not debug:
        detail = (
            "pts is misconfigured; the server log has the details"
            if isinstance(exc, ConfigurationError)
            else INTERNAL_DETAIL
        )
    content: dict[str, Any] = {"error": kind, "detail": detail}
    if isinstance(exc, InvalidTransition):
        content["status"] = str(exc.current)
        content["size"] = exc.size
    headers = dict(exc.headers) if isinstance(exc, ProtocolError) else {}
    if status_code == HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, Draining):
        headers["Retry-After"] = str(exc.retry_after)
    return status_code, content, headers


def internal_error_content(exc: Exception, *, debug: bool) -> dict[str, Any]:
    """The JSON body of a 500 for an error that is no pts error: ``{"error": "internal_error"}``.

    The detail names the exception only in ``debug``.
    """
    detail = f"{type(exc).__name__}: {exc}" if debug else INTERNAL_DETAIL
    return {"error": "internal_error", "detail": detail}


def exception_content(
    exc: Exception, *, debug: bool, name_internal: bool
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, JSON body and headers that answer any exception a request ended with.

    A pts error by the table (:func:`error_content`); a Litestar
    ``HTTPException`` (raised by the framework itself) by its own status, kind
    ``http_error``; anything else is a 500 ``internal_error``, whose detail
    names the exception only with ``debug`` and ``name_internal`` both set.
    For an ASGI app that writes its responses itself (the Durable Streams app).
    """
    if isinstance(exc, PTSError):
        return error_content(exc, debug=debug)
    if isinstance(exc, HTTPException):
        return exc.status_code, {"error": "http_error", "detail": str(exc.detail)}, {}
    content = internal_error_content(exc, debug=debug and name_internal)
    return HTTP_500_INTERNAL_SERVER_ERROR, content, {}


def is_logged(status_code: int, exc: Exception) -> bool:
    """Whether an answer is a failure of the server's, to log once: a 5xx not raised by Litestar."""
    return status_code >= HTTP_500_INTERNAL_SERVER_ERROR and not isinstance(exc, HTTPException)


def error_response(request: AnyRequest, exc: PTSError) -> Response[dict[str, Any]]:
    """The JSON response for a pts error: ``{"error": kind, "detail": message}``.

    See :func:`error_content`. Server-side errors (5xx) are logged once.
    """
    status_code, content, headers = error_content(exc, debug=request.app.debug)
    if is_logged(status_code, exc) and not _logged_by_litestar(request, exc):
        log_request_failure(logger, request.method, request.url.path, exc)
    return Response(content, status_code=status_code, headers=headers or None)


def internal_error_response(request: AnyRequest, exc: Exception) -> Response[dict[str, Any]]:
    """The JSON 500 for an error no other handler took: ``{"error": "internal_error", ...}``.

    Logged once, with its traceback (Litestar's default answers in plain text
    and, unless in debug mode, logs nothing). The plugin registers it for
    status 500, so that an app's own handler for 500 or for the exception's
    type wins. The detail names the exception only in debug mode.
    """
    if not _logged_by_litestar(request, exc):
        log_request_failure(logger, request.method, request.url.path, exc)
    content = internal_error_content(exc, debug=request.app.debug)
    return Response(content, status_code=HTTP_500_INTERNAL_SERVER_ERROR)


def _logged_by_litestar(request: AnyRequest, exc: Exception) -> bool:
    """Whether Litestar's exception middleware logged ``exc`` already (as it does in debug mode).

    The same test as that middleware's, so that an error is logged once, not twice.
    """
    app = request.app
    config = app.logging_config
    if config is None or app.logger is None or config.exception_logging_handler is None:
        return False
    if config.log_exceptions == "never" or (config.log_exceptions == "debug" and not app.debug):
        return False
    return {type(exc), getattr(type(exc), "status_code", None)}.isdisjoint(
        config.disable_stack_trace
    )

"""``PTSPlugin`` and the names of pts's HTTP edge, where they have always been imported from.

The plugin is :mod:`pts.http.plugin`, its routes :mod:`pts.http.routes`, access
control :mod:`pts.http.access` and the error table :mod:`pts.http.errors`;
``from pts.plugin import allow_everything`` (and the rest) keeps working.
"""

from __future__ import annotations

from pts.http.access import (
    ADMIN_TOKEN_ENV,
    Action,
    Authorize,
    Forbidden,
    Unauthorized,
    allow_everything,
)
from pts.http.errors import error_response, error_status, internal_error_response
from pts.http.plugin import PTSPlugin
from pts.http.routes import CancelStream, CreatedStream, CreateStream, StreamView, parse_stream_id

__all__ = [
    "ADMIN_TOKEN_ENV",
    "Action",
    "Authorize",
    "CancelStream",
    "CreateStream",
    "CreatedStream",
    "Forbidden",
    "PTSPlugin",
    "StreamView",
    "Unauthorized",
    "allow_everything",
    "error_response",
    "error_status",
    "internal_error_response",
    "parse_stream_id",
]

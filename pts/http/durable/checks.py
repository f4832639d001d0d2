"""The checks made of every protocol request before it is routed: its header values and path.

Pure functions, no I/O, importable from :mod:`pts.http.durable.wire` too (where
the protocol's other input bounds are). Each request passes them, so the usual
request (ASCII path, clean headers) is let through without a copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from pts.errors import BadRequest

__all__ = ["check_header_values", "check_raw_path"]

# Control characters are not allowed in a header value (RFC 9110 5.5), tab excepted.
_HEADER_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def check_raw_path(raw_path: bytes) -> None:
    """A request path must decode, percent-escapes included, as UTF-8.

    Servers replace undecodable bytes with U+FFFD, so without this ``a%FF`` and
    ``a%FE`` (and ``a%ED%A0%80``, a surrogate) would all name the stream ``a\ufffd``.
    """
    if b"%" not in raw_path and raw_path.isascii():
        return  # nothing to decode, and ASCII is UTF-8 (the usual path: no copies)
    decoded = unquote_to_bytes(raw_path.split(b"?", 1)[0])
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the path is not UTF-8 (once its %-escapes are decoded)") from None


def check_header_values(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """No control characters (NUL among them: Postgres text cannot hold one) in any
    header value. HTTP/1.1 servers refuse most of them; other ASGI servers may not."""
    pairs = headers if isinstance(headers, list) else list(headers)
    # One search of every value, joined by a tab (allowed), finds none in the usual
    # case; only then is each header searched, for the name of the first offender.
    if _HEADER_CONTROL.search(b"\t".join([value for _, value in pairs])) is None:
        return
    for name, value in pairs:
        if _HEADER_CONTROL.search(value) is not None:
            label = name.decode("latin-1")[:60]
            raise BadRequest(f"the {label} header has a control character")

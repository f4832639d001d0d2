"""The plugin's JSON request bodies: read only after access is granted, bounded, shallow.

Litestar decodes a handler's ``data`` before the handler runs, so an access
check inside the handler comes after the body was read and parsed. The plugin's
routes that take a body therefore check access in a guard (guards run before
parameters are resolved) and then call :func:`check_json_body`, which reads the
body once (Litestar caches it for the decoding that follows) and refuses one
nested too deep for a parser to walk safely.
"""

from __future__ import annotations

import re
from typing import Any, TypeAlias

from litestar import Request

from pts.errors import InvalidInput

__all__ = ["MAX_JSON_BODY_BYTES", "MAX_JSON_BODY_DEPTH", "check_json_body", "nests_deeper_than"]

AnyRequest: TypeAlias = Request[Any, Any, Any]

MAX_JSON_BODY_BYTES = 1 << 20
"""The largest JSON body the plugin's routes read (create, cancel): 413 above it."""

MAX_JSON_BODY_DEPTH = 64
"""The deepest nesting of arrays and objects those bodies may have (400 deeper).

Deep enough for any metadata the store accepts (it allows 32 levels), far from
the depth at which a recursive JSON decoder exhausts the stack.
"""

# A JSON string (with its escapes): brackets inside strings do not nest.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def nests_deeper_than(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests arrays and objects more than ``limit`` deep.

    A scan of the bytes, not a parse: it never recurses, and malformed JSON is
    left to the decoder to refuse. Most bodies have too few brackets to need it.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', body)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


async def check_json_body(request: AnyRequest) -> None:
    """Read the request's body (bounded by the route's limit) and refuse a too-deep one.

    Raises InvalidInput (400); an oversized body is Litestar's 413.
    """
    body = await request.body()
    if nests_deeper_than(body, MAX_JSON_BODY_DEPTH):
        raise InvalidInput(
            f"the JSON body nests deeper than {MAX_JSON_BODY_DEPTH} arrays and objects"
        )

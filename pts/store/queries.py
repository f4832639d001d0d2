"""Loads the named queries of ``sql/queries.sql``.

A section headed ``-- name: NAME`` is a query. A section headed
``-- fragment: NAME`` is a piece of SQL that queries include by writing
``{NAME}``; it is substituted when the file is loaded, so every query is whole
SQL by the time a driver sees it. A ``{word}`` that names no fragment is an
error at load time rather than a syntax error at run time.
"""

from __future__ import annotations

import functools
import re

from pts.resources import sql_dir

_HEADER = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{(\w+)\}")


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: NAME`` sections into ``{NAME: SQL}``, with the
    ``-- fragment: NAME`` sections substituted for ``{NAME}`` in them."""
    parts = _HEADER.split(text)
    sections: dict[str, dict[str, str]] = {"name": {}, "fragment": {}}
    # parts = [preamble, kind1, name1, body1, kind2, name2, body2, ...]
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        if name in sections["name"] or name in sections["fragment"]:
            raise ValueError(f"query {name!r} is defined twice")
        sections[kind][name] = body.strip()
    fragments = sections["fragment"]

    def include(match: re.Match[str]) -> str:
        if match[1] not in fragments:
            raise ValueError(f"{{{match[1]}}} names no fragment of the queries file")
        return fragments[match[1]]

    return {name: _INCLUDE.sub(include, sql) for name, sql in sections["name"].items()}


@functools.cache
def queries() -> dict[str, str]:
    """Every named query, as written (``$1`` placeholders), fragments included."""
    return parse_queries((sql_dir() / "queries.sql").read_text(encoding="utf-8"))

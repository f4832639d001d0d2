"""Loads the named queries of ``sql/queries.sql``."""

from __future__ import annotations

import functools
import re

from pts.resources import sql_dir

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: NAME`` sections into ``{NAME: SQL}``."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@functools.cache
def queries() -> dict[str, str]:
    """Every named query, as written (``$1`` placeholders)."""
    return parse_queries((sql_dir() / "queries.sql").read_text(encoding="utf-8"))

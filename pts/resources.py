"""Where the SQL and web files live, in a checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    # An installed wheel carries them as package data (see pyproject.toml);
    # a source checkout (and an editable install) has them at the top level.
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"pts cannot find its {name}/ directory next to {_PACKAGE}")


def sql_dir() -> Path:
    """The directory holding ``schema.sql``, ``queries.sql`` and ``migrations/``."""
    return _find("sql")


def web_dir() -> Path:
    """The directory holding ``templates/`` and ``static/``."""
    return _find("web")

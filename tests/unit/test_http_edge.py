"""The one HTTP edge: every pts error has its entry in the table, and access is one object.

No database, no server.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid

import pts
from pts.errors import PTSError
from pts.http.access import Access, allow_everything
from pts.http.errors import ERRORS, INHERITED, error_status


def _pts_errors() -> set[type[PTSError]]:
    """Every PTSError subclass defined anywhere in the package (every module imported)."""
    for module in pkgutil.walk_packages(pts.__path__, prefix="pts."):
        importlib.import_module(module.name)
    found: set[type[PTSError]] = set()
    todo = [PTSError]
    while todo:
        cls = todo.pop()
        if cls not in found and cls.__module__.split(".")[0] == "pts":
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_every_pts_error_has_an_entry_of_its_own_or_a_deliberate_inherited_one() -> None:
    """The rule: each PTSError subclass of pts is a key of ERRORS, or is listed in INHERITED.

    Inheriting the nearest base's entry silently is what would turn a new
    error into a 500 (or into its base's kind), so it has to be said: either
    an entry of its own, or a place in INHERITED with the reason there.
    """
    errors = _pts_errors()
    assert len(errors) > 20  # the walk found the package's errors, not just PTSError
    missing = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in errors
        if cls not in ERRORS and cls not in INHERITED
    )
    assert not missing, f"PTSError subclasses with no entry in pts.http.errors.ERRORS: {missing}"
    stale = sorted(cls.__qualname__ for cls in INHERITED if cls in ERRORS)
    assert not stale, f"in both ERRORS and INHERITED: {stale}"


def test_the_table_is_looked_up_along_the_mro() -> None:
    class Custom(pts.StreamNotFound):
        pass

    assert error_status(Custom("x")) == (404, "stream_not_found")
    driven = pts.AlreadyDriven(uuid.uuid4(), "done", 3)
    assert error_status(driven) == (409, "already_driven")  # not InvalidTransition's


def test_allow_everything_is_a_property_of_the_policy_not_of_the_functions_identity() -> None:
    assert Access(allow_everything).needs_stream is False
    # Any other hook is just a hook: shown the stream, even one that allows all.
    assert Access(lambda *_: True).needs_stream is True
    # A hook may say it never looks at the stream, or the access may say so for it.
    assert Access(lambda *_: True, needs_stream=False).needs_stream is False

    def hook(*_: object) -> bool:
        return True

    hook.needs_stream = False  # type: ignore[attr-defined]
    assert Access(hook).needs_stream is False
    # Without a hook, the admin token decides; nothing to skip.
    assert Access(None).needs_stream is True
    assert allow_everything(None, "delete", None) is True  # type: ignore[arg-type]

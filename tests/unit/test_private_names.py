"""No module touches another module's private names (``obj._name``).

A private name used from elsewhere marks a missing public seam. Uses inside
the module that defines the name are its own business (a registry calling its
writers' private hooks, say), and so are namedtuple's public ``_replace``,
``_asdict`` and ``_fields``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("pts", "tests", "example_chat")
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def _defines(source: str, name: str) -> bool:
    """Whether a module defines ``name``: a def, a class attribute or an assignment to it."""
    pattern = rf"(def {name}\b|\.{name}\s*(:[^=]*)?=[^=]|^\s+{name}\s*[:=])"
    return re.search(pattern, source, flags=re.M) is not None


def _reach_ins(path: Path, root: Path = ROOT) -> list[str]:
    source = path.read_text()
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in NAMEDTUPLE_API:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if not _defines(source, name):
            found.append(f"{path.relative_to(root)}:{node.lineno}: .{name}")
    return found


def _python_files() -> list[Path]:
    return [
        path
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "node_modules" not in path.parts
    ]


def test_no_module_touches_another_modules_private_names() -> None:
    found = [hit for path in _python_files() for hit in _reach_ins(path)]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_the_check_sees_a_reach_in(tmp_path: Path) -> None:
    """Not vacuous: a use of a name the module does not define is flagged; its own is not."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f(pts, me):\n    me._mine = 1\n    return pts._hub, me._mine\n")
    assert _reach_ins(sample, tmp_path) == ["sample.py:3: ._hub"]

"""Every third-party module the code imports is declared in pyproject.toml.

A package that arrives only as another package's dependency can vanish with
that package's next release; the library may import only its runtime
dependencies and its optional extras (``pts[metrics]``: imported lazily, where
the extra is used), the tests and the demo also the dev group.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = {"pts", "tests", "example_chat"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    """The distributions the requirements name, with what their extras bring
    (``psycopg[pool]`` declares psycopg-pool)."""
    names: set[str] = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", requirement)
        assert match, requirement
        name, extras = match.group(1), match.group(2)
        names.add(_canonical(name))
        for extra in (extras or "").split(","):
            if not extra.strip():
                continue
            for needed in importlib.metadata.requires(name) or []:
                if re.search(rf"extra\s*==\s*['\"]{re.escape(extra.strip())}['\"]", needed):
                    names.add(_canonical(re.split(r"[\s<>=!~;\[(]", needed, maxsplit=1)[0]))
    return names


def _imported(folder: Path) -> dict[str, Path]:
    """Top-level module names imported anywhere under ``folder``, with one file each."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.py")):
        if "node_modules" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def _undeclared(folder: str, allowed: set[str]) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, path in sorted(_imported(ROOT / folder).items()):
        if module in LOCAL or module in sys.stdlib_module_names or module == "__future__":
            continue
        providers = {_canonical(d) for d in distributions.get(module, [])}
        if not providers & allowed:
            where = path.relative_to(ROOT)
            problems.append(f"{module} (in {where}; from {sorted(providers) or 'nothing'})")
    return problems


def _declared() -> tuple[set[str], set[str]]:
    """The runtime dependencies with the optional extras', and the dev group."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = _names(project["project"]["dependencies"])
    for requirements in project["project"].get("optional-dependencies", {}).values():
        runtime |= _names(requirements)
    dev = _names(project["dependency-groups"]["dev"])
    return runtime, dev


def test_the_library_imports_only_its_runtime_dependencies() -> None:
    runtime, _dev = _declared()
    assert not _undeclared("pts", runtime), _undeclared("pts", runtime)


def test_the_tests_and_the_demo_import_only_declared_dependencies() -> None:
    runtime, dev = _declared()
    for folder in ("tests", "example_chat"):
        problems = _undeclared(folder, runtime | dev)
        assert not problems, f"{folder}: {problems}"


def test_the_check_sees_an_undeclared_import() -> None:
    """The walk is not vacuous: without its declarations, pts's imports are flagged."""
    problems = _undeclared("pts", set())
    assert any(p.startswith("litestar ") for p in problems)
    assert any(p.startswith("asyncpg ") for p in problems)

"""The package's shape: no import cycles between pts modules, no module past ~400 lines.

No database, no server: these read the source files of ``pts/`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pts"

MAX_LINES = 400
"""The most lines a module of ``pts/`` may have (the project's "keep modules small")."""

# The ratchet: the modules over MAX_LINES today, each with its line count when it
# was listed as its ceiling. A listed module may shrink but not grow; once it is
# at or under MAX_LINES its entry must go; an entry is never added. Lower a
# ceiling whenever a module shrinks, so that it cannot grow back.
OVERSIZED: dict[str, int] = {}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``pts.http.durable`` for its ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The pts modules ``name`` imports, wherever the import statement is.

    Every import counts: at module level, inside a function (a lazy import
    dodges a cycle at run time, it does not remove the dependency) and under
    ``if TYPE_CHECKING:`` (the module still needs the other to be understood,
    and mypy reads both). ``from package import name`` depends on the
    submodule ``package.name`` when there is one, else on the package; a
    package's ``__init__`` that runs because a submodule of it is imported is
    not counted (``from pts.http.durable import wire`` in ``pts.http.durable.read`` is
    no dependency on ``pts.http.durable`` itself).
    """
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                child = f"{source}.{alias.name}"
                found.add(child if child in modules else source)
    return {target for target in found if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """One cycle per strongly connected component of more than one module (Tarjan),
    with the modules of the component: ``a -> b -> a (in: a, b)``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [
        " -> ".join(_a_cycle(graph, set(component))) + f" (in: {', '.join(component)})"
        for component in components
    ]


def _a_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest import path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_the_import_walk_sees_the_imports_it_must() -> None:
    """The walk finds lazy, TYPE_CHECKING and relative imports (else it proves nothing)."""
    graph = _graph()
    assert "pts.errors" in graph["pts.core"]  # module level
    assert "pts.http.durable.wire" in graph["pts.http.durable.read"]  # from package import module
    assert "pts.http.durable" in graph["pts.http.plugin"]  # from package import name
    assert len(graph) > 30


def test_no_import_cycles_between_pts_modules() -> None:
    """No two pts modules import each other, directly or through others.

    A cycle means two modules are one design split over two files: whichever
    is read first half exists when the other runs, and neither can be
    understood (or tested) alone.
    """
    cycles = _cycles(_graph())
    assert not cycles, "import cycles in pts/:\n" + "\n".join(cycles)


def test_no_module_grows_past_its_line_ceiling() -> None:
    """A ratchet on module size: no new module over MAX_LINES, no listed one growing.

    The modules over MAX_LINES today are listed in OVERSIZED with their line
    counts as ceilings. The list can only shrink: a listed module may not grow
    past its ceiling, a module that is back at or under MAX_LINES must leave
    the list, and any other module over MAX_LINES fails.
    """
    root = PACKAGE.parent
    sizes = {
        path.relative_to(root).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    problems = [
        f"{module}: {lines} lines, over {OVERSIZED.get(module, MAX_LINES)}"
        for module, lines in sorted(sizes.items())
        if lines > OVERSIZED.get(module, MAX_LINES)
    ]
    problems += [
        f"{module}: {sizes[module]} lines, no longer over {MAX_LINES}: remove it from OVERSIZED"
        for module in sorted(OVERSIZED)
        if module in sizes and sizes[module] <= MAX_LINES
    ]
    problems += [
        f"{module}: listed in OVERSIZED but gone: remove it"
        for module in sorted(OVERSIZED)
        if module not in sizes
    ]
    assert not problems, "modules too long:\n" + "\n".join(problems)

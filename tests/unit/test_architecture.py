"""The package's shape: no import cycles, imports only down the layers, no module past ~400 lines.

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


# The layers, top down (the README's layout draws them). A module may import its
# own layer and the layers below it, never one above: the store knows nothing of
# live reads, live reads nothing of the component, the component nothing of HTTP,
# and nothing in the library anything of the command line or the benchmarks.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("command line", ("pts.cli", "pts.cli_options", "pts.cli_prune", "pts.shell", "pts.bench")),
    ("HTTP edge", ("pts.http", "pts.plugin")),
    (
        "component",
        ("pts.core", "pts.operations", "pts.upkeep", "pts.opening", "pts.driving", "pts.ui"),
    ),
    ("live reads and writers", ("pts.live", "pts.writing", "pts.flush", "pts.body")),
    ("store", ("pts.store", "pts.testing", "pts.database")),
]
"""Modules not listed (``pts.errors``, ``pts.models``, ``pts.settings``, ``pts.stats``, …)
are the shared vocabulary below every layer; ``pts`` itself (``__init__``) is above all."""

LAYER_EXCEPTIONS = {
    # The in-memory twin of the store announces its changes in the listener's
    # Notification type, and the component opens one when it is given one.
    ("pts.testing.notify", "pts.live.notification"),
    ("pts.testing.memory", "pts.live.notification"),
}


def _layer_of(module: str) -> int | None:
    for rank, (_name, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return rank
    return None


def test_the_layer_table_names_real_modules() -> None:
    modules = _modules()
    for _name, prefixes in LAYERS:
        for prefix in prefixes:
            assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix


def test_imports_point_down_the_layers_never_up() -> None:
    """No module imports a layer above its own (see LAYERS)."""
    upward = [
        f"{module} ({LAYERS[rank][0]}) imports {target} ({LAYERS[target_rank][0]})"
        for module, targets in sorted(_graph().items())
        if (rank := _layer_of(module)) is not None
        for target in sorted(targets)
        if (target_rank := _layer_of(target)) is not None
        and target_rank < rank
        and (module, target) not in LAYER_EXCEPTIONS
    ]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)

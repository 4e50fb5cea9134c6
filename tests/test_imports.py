"""The package's import graph: no circles, and the model layer never imports data preparation.

The graph is read from the source with :mod:`ast`, so it holds every import a module can run:
module-level and function-local, absolute and relative. ``from x import y`` where ``x.y`` is a
module is an edge to ``x.y``; otherwise it is an edge to ``x``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "stylecraft"


def _module_names(src: Path) -> dict[str, Path]:
    """Dotted name -> file for every module of the package (a package is its ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _package_of(name: str, path: Path) -> str:
    """The package that relative imports in module ``name`` start from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _nearest_module(dotted: str, modules: dict[str, Path]) -> str | None:
    """``dotted`` or its longest prefix that is a module of the package."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imported(node: ast.Import | ast.ImportFrom, name: str, path: Path) -> list[str]:
    """Dotted names that one import statement of module ``name`` brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = _package_of(name, path).split(".")
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    return [f"{origin}.{alias.name}" for alias in node.names] + [origin]


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source."""
    modules = _module_names(src)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _imported(node, name, path)
            if isinstance(node, ast.ImportFrom):
                # ``from x import y``: the submodule x.y if there is one, else x itself.
                submodules = [t for t in targets[:-1] if t in modules]
                found = submodules if len(submodules) == len(targets) - 1 else [*submodules, targets[-1]]
            else:
                found = targets
            for dotted in found:
                target = _nearest_module(dotted, modules)
                if target is not None and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None if the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_graph_sees_function_local_relative_and_submodule_imports(tmp_path: Path) -> None:
    pkg = tmp_path / ROOT / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / ROOT / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from stylecraft.sub import b\n")
    (pkg / "b.py").write_text("from . import c\nfrom .c import VALUE\n")
    (pkg / "c.py").write_text("VALUE = 1\nimport stylecraft.sub.a\n")
    graph = import_graph(tmp_path)
    assert graph["stylecraft.sub.a"] == {"stylecraft.sub.b"}
    assert graph["stylecraft.sub.b"] == {"stylecraft.sub.c"}
    assert graph["stylecraft.sub.c"] == {"stylecraft.sub.a"}
    assert find_cycle(graph) == ["stylecraft.sub.a", "stylecraft.sub.b", "stylecraft.sub.c", "stylecraft.sub.a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_models_do_not_import_data(graph: dict[str, set[str]]) -> None:
    bad = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name == f"{ROOT}.models" or name.startswith(f"{ROOT}.models.")
        for target in targets
        if target == f"{ROOT}.data" or target.startswith(f"{ROOT}.data.")
    )
    assert not bad, "the model layer imports data preparation: " + "; ".join(bad)

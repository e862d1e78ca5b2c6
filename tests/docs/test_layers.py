"""The layers of docs/architecture.md hold: each imports only from the layers below it, no circles.

Imports are read from the source (function-level ones included, ``if TYPE_CHECKING:``
blocks excluded: they never run), so a circle cannot hide inside a function.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "ebmlab"
# Bottom to top; a package may import from its own layer and any layer before it.
LAYERS = [
    {"_validation", "_fields", "_files", "_grad", "__init__"},
    {"viz"},
    {"data"},
    {"models"},
    {"samplers"},
    {"metrics"},
    {"estimators"},
    {"training"},
    {"experiments", "sklearn"},
    {"cli", "__main__"},
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def _runtime_imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("ebmlab"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ebmlab"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@functools.cache
def _modules() -> dict[str, set[str]]:
    graph = {}
    for path in SOURCE.rglob("*.py"):
        parts = ("ebmlab", *path.relative_to(SOURCE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = _runtime_imports(ast.parse(path.read_text()))
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"  # ebmlab.__main__ -> "__main__"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_point_down(module):
    own = RANK[_package(module)]
    for imported in _modules()[module]:
        assert RANK[_package(imported)] <= own, f"{module} imports {imported} from a higher layer"


def test_no_import_circles_between_modules():
    graph = _modules()
    # A package's __init__ re-exporting its modules is not a circle between modules.
    edges = {
        m: {d for d in deps if d in graph and not m.startswith(d + ".")}
        for m, deps in graph.items()
    }
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in edges[module]:
            if state.get(imported) == 1:
                circle = path[path.index(imported) :] + [imported]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])

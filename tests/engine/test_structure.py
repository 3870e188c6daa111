"""The engine's modules import each other in one direction only, and its functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna_fmd.engine

ENGINE = Path(optuna_fmd.engine.__file__).parent
MAX_LINES = 80


def _trees() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text()) for p in sorted(ENGINE.glob("*.py"))}


def import_graph(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """Module -> engine modules it imports anywhere (lazy and ``TYPE_CHECKING`` imports too)."""
    graph: dict[str, set[str]] = {name: set() for name in trees}
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                graph[name].add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["optuna_fmd", "engine"] and len(parts) > 2:
                    graph[name].add(parts[2])
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_engine_imports_have_no_cycle() -> None:
    graph = import_graph(_trees())
    assert "_common" in graph["_forward"] and "_compiled" in graph["_forward"]
    assert find_cycle(graph) is None, find_cycle(graph)


def test_cycle_finder_finds_a_lazy_import_cycle() -> None:
    tree_a = ast.parse("from ._b import x\n")
    tree_b = ast.parse("def f():\n    from ._a import y\n")
    graph = import_graph({"_a": tree_a, "_b": tree_b})
    assert find_cycle(graph) == ["_a", "_b", "_a"]


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function without its docstring."""
    lines = (fn.end_lineno or fn.lineno) - fn.lineno + 1
    first = fn.body[0]
    value = first.value if isinstance(first, ast.Expr) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        lines -= (first.end_lineno or first.lineno) - first.lineno + 1
    return lines


def test_no_engine_function_is_long() -> None:
    long = {
        f"{name}.{node.name}": _code_lines(node)
        for name, tree in _trees().items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and _code_lines(node) > MAX_LINES
    }
    assert long == {}

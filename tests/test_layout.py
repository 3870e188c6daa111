"""The package's layout rules: private names stay in their module; imports sit at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "optuna_fmd"
# The study driver and the tasks (the engine, the comparison and the visualisation subpackages
# keep their own internal helpers).
MODULES = sorted([*PACKAGE.glob("*.py"), *(PACKAGE / "tasks").glob("*.py")])


def _imported_names(tree: ast.AST) -> list[tuple[int, str, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level > 0 or (node.module or "").startswith("optuna_fmd")
        ):
            out += [(node.lineno, node.module or ".", a.name) for a in node.names]
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    tree = ast.parse(path.read_text())
    private = [
        f"line {line}: from {module} import {name}"
        for line, module, name in _imported_names(tree)
        if name.startswith("_")
    ]
    assert private == []


def test_cli_imports_the_package_at_the_top() -> None:
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    lazy = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef)
        for node in ast.walk(func)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert lazy == []


#: No module of the package is longer than this many lines (Optuna's, optax's and torch.func's
#: modules are a few hundred lines; a longer one holds more than one concern).
MAX_LINES = 600
#: The modules still over :data:`MAX_LINES`, each with its size today as a ceiling: the to-do
#: list for splitting them. Lower a ceiling when a module shrinks; remove it once it is under.
OVER_LIMIT = {
    "cli.py": 675,
    "_outer.py": 748,
}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {str(p.relative_to(PACKAGE)): _lines(p) for p in sorted(PACKAGE.rglob("*.py"))}
    over = {name: n for name, n in sizes.items() if n > OVER_LIMIT.get(name, MAX_LINES)}
    assert over == {}, f"over {MAX_LINES} lines (or their listed ceiling): {over}"
    stale = [name for name in OVER_LIMIT if sizes.get(name, 0) <= MAX_LINES]
    assert stale == [], f"under {MAX_LINES} lines now: drop them from OVER_LIMIT: {stale}"

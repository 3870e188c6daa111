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

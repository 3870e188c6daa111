"""The package's layout rules: private names stay in their module and private modules in their
package; imports sit at the top; modules and functions stay short; the outer state's keys are
spelled in its owner only; the plots load neither the engine nor torch."""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import typing
from pathlib import Path
from types import ModuleType

import pytest

from optuna_fmd import outer
from optuna_fmd.outer import _state
from optuna_fmd.outer._registry import rules

PACKAGE = Path(__file__).resolve().parents[1] / "optuna_fmd"
#: The documentation's page on the package's layout.
LAYOUT_DOC = PACKAGE.parent / "docs" / "layout.md"
# The study driver, the outer loop, the space and the tasks (the engine, the comparison and the
# visualisation subpackages keep their own internal helpers).
PURE = ("outer", "space")  # the subpackages that import neither torch nor Optuna (but one module)
MODULES = sorted(
    [
        *PACKAGE.glob("*.py"),
        *(PACKAGE / "tasks").glob("*.py"),
        *(p for sub in PURE for p in (PACKAGE / sub).rglob("*.py")),
    ]
)


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
OVER_LIMIT: dict[str, int] = {}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {str(p.relative_to(PACKAGE)): _lines(p) for p in sorted(PACKAGE.rglob("*.py"))}
    over = {name: n for name, n in sizes.items() if n > OVER_LIMIT.get(name, MAX_LINES)}
    assert over == {}, f"over {MAX_LINES} lines (or their listed ceiling): {over}"
    stale = [name for name in OVER_LIMIT if sizes.get(name, 0) <= MAX_LINES]
    assert stale == [], f"under {MAX_LINES} lines now: drop them from OVER_LIMIT: {stale}"


#: No function of the package is longer than this many lines (its ``def`` to its last line).
MAX_FUNCTION_LINES = 80
#: The functions still over :data:`MAX_FUNCTION_LINES`, each with its length as a ceiling: the
#: to-do list for splitting them. Lower a ceiling when one shrinks; remove it once it is under.
LONG_FUNCTIONS: dict[str, int] = {}


def _function_lengths() -> dict[str, int]:
    """``{"module.py:Class.function": lines}`` for every function of the package (nested
    functions and methods too)."""
    out = {}

    def walk(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                out[f"{module}:{name}"] = (child.end_lineno or child.lineno) - child.lineno + 1
                walk(child, module, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, module, prefix + child.name + ".")
            else:
                walk(child, module, prefix)

    for path in sorted(PACKAGE.rglob("*.py")):
        walk(ast.parse(path.read_text()), str(path.relative_to(PACKAGE)), "")
    return out


def test_no_function_is_over_the_size_limit() -> None:
    lengths = _function_lengths()
    over = {
        name: n for name, n in lengths.items() if n > LONG_FUNCTIONS.get(name, MAX_FUNCTION_LINES)
    }
    assert over == {}, f"over {MAX_FUNCTION_LINES} lines (or their listed ceiling): {over}"
    stale = [name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES]
    assert stale == [], (
        f"at most {MAX_FUNCTION_LINES} lines now: drop from LONG_FUNCTIONS: {stale}"
    )


#: The outer state's owner: with each rule's state module (:func:`_rule_state_modules`), the
#: only modules that spell the keys of its stored JSON.
STATE_OWNER = PACKAGE / "outer" / "_state.py"
#: Words of the state's layout that also name a field of another record these modules read
#: by key, with the record: they are left out of the check.
SHARED_WORDS = {"space": "the study's stored config in cli.py (the kind of space)"}


def _rule_state_modules() -> list[ModuleType]:
    """The module of each registered rule's state type (``_sign``, ``search/_state``)."""
    return [sys.modules[rule.state.__module__] for rule in rules()]


def _state_types(cls: type, seen: set[type]) -> set[type]:
    """``cls`` and the state types its fields hold, through unions and tuples."""

    def walk(hint: object) -> None:
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and hint not in seen:
            seen.add(hint)
            for field_hint in typing.get_type_hints(hint).values():
                walk(field_hint)
        for arg in typing.get_args(hint):
            walk(arg)

    walk(cls)
    return seen


def _state_keys() -> set[str]:
    """Every key of the stored state: the fields of the owner's state types and of each
    registered rule's state with its parts (the rule's name is stored as ``rule``, a slot's
    fields at the top level) and the keys the owner adds."""
    types = {
        t
        for t in vars(_state).values()
        if isinstance(t, type)
        and dataclasses.is_dataclass(t)
        and t.__module__ == _state.__name__
        and t is not _state.StateView
    }
    for rule in rules():
        types |= _state_types(rule.state, set())
    names = {f.name for t in types for f in dataclasses.fields(t)} - {"name", "slot"}
    return (names | {"version", "rule", "hypergradient", "kind"}) - set(SHARED_WORDS)


def _touches_the_state(tree: ast.AST) -> bool:
    """Whether a module imports the owner or handles a stored state (``STATE_KEY``,
    ``CHECK_ATTR``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_state"):
            return True
        if isinstance(node, ast.Name) and node.id in ("STATE_KEY", "CHECK_ATTR"):
            return True
    return False


def _keys_read(tree: ast.AST, keys: set[str]) -> list[str]:
    """Where ``tree`` reads or writes one of ``keys`` by string: ``x["key"]``,
    ``x.get("key")`` (``pop``, ``setdefault``), ``"key" in x`` and ``x.update(key=...)``; a
    trial's own ``user_attrs`` and ``params``, and the sampler's keywords (``legacy``), are
    other namespaces."""

    def key_of(node: ast.AST) -> tuple[object, ast.AST] | None:
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return node.slice.value, node.value
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            first = node.args[0]
            if node.func.attr in ("get", "pop", "setdefault") and isinstance(first, ast.Constant):
                return first.value, node.func.value
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant):
            return (
                (node.left.value, node.comparators[0])
                if isinstance(node.ops[0], (ast.In, ast.NotIn))
                else None
            )
        return None

    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "update":
            out += [f"line {node.lineno}: {k.arg}=" for k in node.keywords if k.arg in keys]
        found = key_of(node)
        if found is None or found[0] not in keys:
            continue
        receiver = ast.unparse(found[1])
        if not receiver.endswith(("user_attrs", "params", "legacy")):
            out.append(f"line {node.lineno}: {ast.unparse(node)}")
    return out


def test_the_outer_states_keys_are_spelled_only_in_its_owner() -> None:
    keys = _state_keys()
    assert {"incumbent", "probe", "claim", "retry_of", "origin", "x"} <= keys
    found = {}
    owners = {STATE_OWNER, *(Path(m.__file__ or "") for m in _rule_state_modules())}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in owners:
            continue
        tree = ast.parse(path.read_text())
        literals = (_state.STATE_KEY, _state.CHECK_ATTR)
        hits = [
            f"line {node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in literals
        ]
        if _touches_the_state(tree):
            hits += _keys_read(tree, keys)
        if hits:
            found[str(path.relative_to(PACKAGE))] = hits
    assert found == {}, (
        f"the outer state's keys read by string outside {STATE_OWNER.name} (read the typed "
        f"state's attributes: OuterState.from_json, read_view, read_check): {found}"
    )


def test_the_layout_page_names_every_module_and_subpackage() -> None:
    """docs/layout.md lists the package's top-level modules (``cli.py``) and subpackages
    (``engine/``), and the modules of the outer loop and the space (``_climb.py``,
    ``search/``), each once at least."""
    text = LAYOUT_DOC.read_text()
    names = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    names += [p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()]
    for sub in PURE:
        names += [p.name for p in (PACKAGE / sub).rglob("*.py") if p.name != "__init__.py"]
        names += [p.name + "/" for p in (PACKAGE / sub).iterdir() if (p / "__init__.py").exists()]
    missing = sorted(n for n in names if not re.search(rf"(?<![\w/]){re.escape(n)}", text))
    assert missing == [], f"not described in {LAYOUT_DOC.name}: {missing}"


#: The one module of the pure subpackages that speaks to Optuna: it claims population slots in
#: the study's storage.
OPTUNA_EDGE = PACKAGE / "outer" / "_population.py"


def _third_party(tree: ast.AST) -> set[str]:
    """The top-level names of the modules ``tree`` imports (``torch``, ``optuna``, ...)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("sub", PURE)
def test_the_outer_loop_and_the_space_import_neither_torch_nor_optuna(sub: str) -> None:
    found = {}
    for path in sorted((PACKAGE / sub).rglob("*.py")):
        heavy = _third_party(ast.parse(path.read_text())) & {"torch", "optuna", "numpy"}
        if path == OPTUNA_EDGE:
            heavy -= {"optuna"}
        if heavy:
            found[str(path.relative_to(PACKAGE))] = sorted(heavy)
    assert found == {}


def test_the_outer_loop_and_the_space_do_not_import_the_modules_that_use_them() -> None:
    """``outer/`` may import ``space/`` and the shared checks; neither imports the sampler,
    the objective, the engine, the CLI or any other part of the package above them."""
    allowed = {"outer": {"outer", "space", "_checks"}, "space": {"space", "_checks"}}
    found = {}
    for sub, ok in allowed.items():
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            parts = path.relative_to(PACKAGE).parts[:-1]
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom) or node.level == 0:
                    continue
                base = list(parts[: len(parts) - node.level + 1])
                target = [*base, *(node.module or "").split(".")] if node.module else base
                top = target[0] if target else ""
                if top not in ok:
                    found.setdefault(str(path.relative_to(PACKAGE)), []).append(
                        f"line {node.lineno}: {'.' * node.level}{node.module or ''}"
                    )
    assert found == {}


def _module_of(path: Path) -> tuple[str, ...]:
    """``optuna_fmd/outer/_state.py`` -> ``("optuna_fmd", "outer", "_state")``; a package's
    ``__init__.py`` -> the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def _file_of(module: tuple[str, ...]) -> Path | None:
    """The file of a module of the package (``None``: not a module of the package)."""
    base = PACKAGE.parent.joinpath(*module)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _loaded(path: Path, node: ast.Import | ast.ImportFrom) -> list[tuple[str, ...]]:
    """The modules of the package an import statement of ``path`` loads:
    ``from ..outer._state import X`` the module ``optuna_fmd.outer._state``,
    ``from . import tasks`` the module ``tasks`` too."""
    if isinstance(node, ast.Import):
        found = [tuple(a.name.split(".")) for a in node.names]
    else:
        here = _module_of(path) if path.name == "__init__.py" else _module_of(path)[:-1]
        base = here[: len(here) - node.level + 1] if node.level else ()
        module = base + tuple(node.module.split(".")) if node.module else base
        found = [module, *((*module, a.name) for a in node.names)]
    return [m for m in found if m[:1] == (PACKAGE.name,) and _file_of(m) is not None]


def _owner(module: tuple[str, ...]) -> tuple[str, ...] | None:
    """The package a private module belongs to: the subpackage of ``optuna_fmd`` it lies in
    (``outer`` for ``outer/_state.py`` and ``outer/search/_climb.py``), or the top package for
    its own (``_checks.py``); ``None`` for a public module."""
    private = [i for i, part in enumerate(module) if part.startswith("_")]
    if not private:
        return None
    return module[:2] if private[0] >= 2 else module[:1]


def test_no_module_imports_a_private_module_of_another_package() -> None:
    """A package's modules may import each other's private modules (``search/_state.py`` its
    ``outer/_state.py``, anyone ``_checks.py``); another package imports the names it
    needs from the package's public face (``from .outer import read_view``), lazy imports
    too."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _module_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for module in _loaded(path, node):
                owner = _owner(module)
                if owner is not None and here[: len(owner)] != owner:
                    found.setdefault(str(path.relative_to(PACKAGE)), []).append(
                        f"line {node.lineno}: {'.'.join(module)}"
                    )
    assert found == {}, f"private modules of another package (import its public face): {found}"


def _imports_on_load(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when a module is imported: at its top level, in its
    top-level ``if``, ``try`` and ``with`` blocks and its class bodies; not in functions nor
    under ``if TYPE_CHECKING:``."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
            elif isinstance(node, ast.If):
                if not ast.unparse(node.test).endswith("TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *node.handlers):
                    visit(block if isinstance(block, list) else block.body)
            elif isinstance(node, (ast.With, ast.ClassDef)):
                visit(node.body)

    visit(tree.body)
    return out


#: What the plots must not load: the engine, and torch with it.
HEAVY = ("torch", "torchvision")
ENGINE = (PACKAGE.name, "engine")


def _heavy_chain(start: Path) -> list[str] | None:
    """The chain of module-level imports by which ``start`` loads the engine or torch
    (``["visualization._classes", "objective", "engine"]``), following the package's own
    modules and the packages above each; ``None`` if it loads neither."""
    first = _module_of(start)
    came_from: dict[tuple[str, ...], tuple[str, ...] | None] = {first: None}
    todo = [first]
    while todo:
        module = todo.pop()
        path = _file_of(module)
        assert path is not None
        imports = _imports_on_load(ast.parse(path.read_text()))
        heavy = module[: len(ENGINE)] == ENGINE or any(
            name.split(".")[0] in HEAVY
            for node in imports
            for name in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if node.level == 0
                else []
            )
        )
        if heavy:
            chain: list[str] = []
            step: tuple[str, ...] | None = module
            while step is not None:
                chain.insert(0, ".".join(step[1:]) or step[0])
                step = came_from[step]
            return chain
        for node in imports:
            for target in _loaded(path, node):
                for n in range(1, len(target) + 1):
                    if target[:n] not in came_from:
                        came_from[target[:n]] = module
                        todo.append(target[:n])
    return None


def test_the_plots_load_neither_the_engine_nor_torch() -> None:
    """Plotting a stored study needs no torch: nothing under ``visualization/`` imports the
    engine or torch when it is loaded, directly or through the modules it imports."""
    found = {}
    for path in sorted((PACKAGE / "visualization").rglob("*.py")):
        chain = _heavy_chain(path)
        if chain is not None:
            found[str(path.relative_to(PACKAGE))] = " -> ".join(chain)
    assert found == {}, f"plots that load the engine or torch: {found}"


def _room(module: str) -> str:
    """The room of an outer rule's module: the module itself (``outer._sign``), or the
    subpackage of the outer loop it lies in (``outer.search`` for ``outer.search._rule``)."""
    parts = module.split(".")
    assert parts[:2] == ["optuna_fmd", "outer"], module
    return ".".join(parts[:3])


def test_each_outer_rule_is_one_room() -> None:
    """Every registered rule's settings, state type and factory (``fmd.outer.<name>``) are
    defined in one module of the outer loop (``_sign.py``), or one subpackage of it for a
    rule with phases (``search/``), which registers the rule: adding a rule adds one room."""
    found = {}
    for rule in rules():
        factory = getattr(outer, rule.name, None)
        assert callable(factory), f"fmd.outer.{rule.name} is not the rule's factory"
        assert isinstance(factory(), rule.settings), rule.name
        where = {
            "settings": rule.settings.__module__,
            "state": rule.state.__module__,
            "factory": factory.__module__,
        }
        rooms = {_room(m) for m in where.values()}
        source = "".join(
            Path(m.__file__ or "").read_text()
            for m in map(sys.modules.get, set(where.values()))
            if m is not None
        )
        if len(rooms) != 1 or rooms == {"optuna_fmd.outer"} or "register(" not in source:
            found[rule.name] = where
    assert found == {}, f"rules spread over several modules (or not registered there): {found}"


def test_no_list_of_the_outer_rules_names_is_typed_outside_the_registry() -> None:
    """A tuple, list, set or dict keys of two or more rules' names (``("search", "sign")``)
    is a second registry: read :func:`~optuna_fmd.outer.rule_names` instead (``__all__``
    names the factories, not the rules)."""
    names = {rule.name for rule in rules()}
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        exported = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "__all__" for t in node.targets)
        }
        for node in ast.walk(tree):
            if id(node) in exported:
                continue
            items = (
                node.keys
                if isinstance(node, ast.Dict)
                else node.elts
                if isinstance(node, (ast.Tuple, ast.List, ast.Set))
                else []
            )
            literals = {i.value for i in items if isinstance(i, ast.Constant)}
            if len(literals & names) >= 2:
                found.setdefault(str(path.relative_to(PACKAGE)), []).append(
                    f"line {node.lineno}: {ast.unparse(node)[:60]}"
                )
    assert found == {}


def _best_iterate_call(node: ast.AST | None) -> bool:
    """Whether ``node`` calls ``best_iterate`` (a function or a method)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "best_iterate"


def _positional_uses_of_the_best_point(tree: ast.AST) -> list[int]:
    """Lines that unpack a ``best_iterate(...)`` result by position: a tuple target assigned
    the call (or a name holding it), or a name holding it indexed or iterated."""
    held: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _best_iterate_call(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            held |= {t.id for t in targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        value = getattr(node, "value", None)
        held_value = isinstance(value, ast.Name) and value.id in held
        if isinstance(node, ast.Assign) and (_best_iterate_call(value) or held_value):
            if any(isinstance(t, (ast.Tuple, ast.List, ast.Starred)) for t in node.targets):
                found.append(node.lineno)
        elif isinstance(node, ast.Subscript) and held_value:
            found.append(node.lineno)
        elif isinstance(node, (ast.For, ast.comprehension)) and (
            _best_iterate_call(node.iter)
            or (isinstance(node.iter, ast.Name) and node.iter.id in held)
        ):
            found.append(getattr(node, "lineno", 0))
    return found


def test_no_module_unpacks_the_best_point_by_position() -> None:
    """``best_iterate`` returns one record (:class:`~optuna_fmd.outer.BestIterate`): every
    caller reads its fields by name."""
    root = PACKAGE.parent
    paths = [
        *PACKAGE.rglob("*.py"),
        *(root / "tests").rglob("*.py"),
        *(root / "examples").rglob("*.py"),
        *(root / "hub").rglob("*.py"),
    ]
    found = [
        f"{path.relative_to(root)}:{line}"
        for path in paths
        for line in _positional_uses_of_the_best_point(ast.parse(path.read_text()))
    ]
    assert found == []
    assert dataclasses.is_dataclass(outer.BestIterate)
    assert outer.BestIterate.__dataclass_params__.frozen  # type: ignore[attr-defined]


#: No signature of these entry points has more parameters than this (``self`` not counted):
#: options that travel together are one object (``EngineOptions``, ``SnapshotOptions``,
#: ``Snapshot``), as torch.func's ``vmap`` takes a few.
MAX_PARAMETERS = 8
#: ``module.py:function`` (or ``module.py:Class.method``) of the entry points checked.
THIN_CALLS = (
    "episode.py:run_episode",
    "engine/_auto.py:choose_engine",
    "engine/_snapshot.py:Snapshots.take",
    "cli.py:run_study",
    "outer/_population.py:Population.__init__",
)


def _parameters(name: str) -> list[str]:
    """The parameters of the function ``module.py:[Class.]function``, ``self`` left out."""
    module, _, qualname = name.partition(":")
    node: ast.AST = ast.parse((PACKAGE / module).read_text())
    for part in qualname.split("."):
        node = next(
            n
            for n in ast.iter_child_nodes(node)
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part
        )
    assert isinstance(node, ast.FunctionDef)
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return [a.arg for a in every if a.arg != "self"]


@pytest.mark.parametrize("name", THIN_CALLS)
def test_the_entry_points_take_few_parameters(name: str) -> None:
    params = _parameters(name)
    assert len(params) <= MAX_PARAMETERS, (
        f"{name} takes {len(params)} parameters (at most {MAX_PARAMETERS}): group the ones that "
        f"travel together into an options object: {params}"
    )


def test_the_engine_strings_check_is_written_in_one_place() -> None:
    """The engine is checked once, where it enters (``EngineOptions``), and trusted inside."""
    message = "`engine` must be one of {ENGINES}"
    places = [
        str(p.relative_to(PACKAGE))
        for p in sorted(PACKAGE.rglob("*.py"))
        if message in p.read_text()
    ]
    assert places == ["engine/_options.py"], f"{message!r} written in {places}"


def test_the_population_is_asked_and_told_and_holds_no_callbacks() -> None:
    """The population decides and the sampler acts: nothing the population is built with or
    asked with is a callable, so control never goes sampler -> population -> sampler."""
    tree = ast.parse((PACKAGE / "outer" / "_population.py").read_text())
    population = next(
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Population"
    )
    typed = [
        (f.name, a.arg, ast.unparse(a.annotation))
        for f in population.body
        if isinstance(f, ast.FunctionDef)
        for a in [*f.args.args, *f.args.kwonlyargs]
        if a.annotation is not None
    ]
    assert typed, "Population's methods carry no annotations to check"
    callbacks = [t for t in typed if "Callable" in t[2]]
    assert not callbacks, f"Population takes callables: {callbacks}"

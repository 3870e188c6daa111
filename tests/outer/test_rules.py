"""One interface for the outer rules: every rule in the registry satisfies it, steps from its
own state through JSON, and the sampler holds a rule object without asking its name."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from optuna_fmd.outer._geometry import Coord, Geometry
from optuna_fmd.outer._point import Point
from optuna_fmd.outer._rules import (
    OUTER_RULES,
    RULES,
    OuterRule,
    Proposal,
    RuleSettings,
    check_rule,
    make_rule,
)
from optuna_fmd.outer._state import OuterState

SAMPLER = Path(__file__).resolve().parents[2] / "optuna_fmd" / "sampler.py"
SETTINGS = RuleSettings(
    step_size=0.1,
    trust=0.25,
    min_step=1e-3,
    backtrack_tol=0.02,
    max_backtracks=2,
    betas=(0.9, 0.999),
    clip=5.0,
)


def _geometry() -> Geometry:
    coords = [Coord("log", 1e-3, 1.0), Coord("linear", -1.0, 1.0)]
    return Geometry(coords, [True, False], [True, True], [0.05, 0.0], blocks=[0, 1])


def _f(x: list[float]) -> float:
    return math.log(x[0] / 0.2) ** 2 + (x[1] - 0.3) ** 2 + 1.0


def _g(x: list[float]) -> list[float]:
    return [2 * math.log(x[0] / 0.2) / x[0], 2 * (x[1] - 0.3)]


def test_the_registry_holds_every_outer_rule() -> None:
    assert OUTER_RULES == ("search", "sign", "adam") == tuple(RULES)
    assert {n: k.default_step for n, k in RULES.items()} == {
        "search": 0.05,
        "sign": 0.1,
        "adam": 0.1,
    }
    assert [n for n, k in RULES.items() if k.plain] == ["search"]


@pytest.mark.parametrize(("name", "step"), [("search", 0.05), ("sign", 0.1), ("adam", 0.1)])
def test_check_rule_fills_in_each_rules_default_step(name: str, step: float) -> None:
    assert check_rule(name, None, 0.25, 1e-3, 0.02, 6, (0.9, 0.999), 5.0) == step
    assert check_rule(name, 0.3, 0.25, 1e-3, 0.02, 6, (0.9, 0.999), 5.0) == 0.3


def test_check_rule_names_the_rules_and_the_plain_one() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        check_rule("lbfgs", None, 0.25, 1e-3, 0.02, 6, (0.9, 0.999), 5.0)
    with pytest.raises(ValueError, match="needs outer='search'"):
        check_rule("adam", None, 0.25, 1e-3, 0.02, 6, (0.9, 0.999), 5.0, hypergradients=False)


@pytest.mark.parametrize("name", OUTER_RULES)
def test_every_rule_satisfies_the_interface(name: str) -> None:
    rule: OuterRule = make_rule(name, _geometry(), SETTINGS)
    assert rule.name == name
    for method in ("init", "accepts", "step"):
        assert callable(getattr(rule, method))
    state = rule.init()
    assert state.name == name and rule.accepts(state)
    assert not state.converged
    first = rule.step(None, [], 1.0)
    assert isinstance(first, Proposal)
    assert first.x == [0.05, 0.0] and first.state.name == name and first.notes == []


@pytest.mark.parametrize("name", OUTER_RULES)
def test_a_rule_accepts_no_other_rules_state(name: str) -> None:
    rule = make_rule(name, _geometry(), SETTINGS)
    others = [make_rule(n, _geometry(), SETTINGS).init() for n in OUTER_RULES if n != name]
    assert not any(rule.accepts(s) for s in others)


@pytest.mark.parametrize("name", OUTER_RULES)
def test_every_rule_descends_a_bowl_from_its_stored_state(name: str) -> None:
    rule = make_rule(name, _geometry(), SETTINGS)
    seen: list[Point] = []
    for number in range(30):
        ours = [p.state for p in seen if p.state is not None]
        x, state, origin, _ = rule.step(ours[-1].rule if ours else None, seen, 1.0)
        stored = OuterState.from_json(OuterState(state, origin).to_json())
        assert stored.rule == state and rule.accepts(stored.rule)
        grad = _g(x) if stored.wants_hypergradient else None
        seen.append(Point(number, x, _f(x), False, grad, stored))
    values = [p.value for p in seen if p.value is not None]
    assert min(values) < _f([0.05, 0.0]) - 0.5 * (_f([0.05, 0.0]) - 1.0)


def test_the_search_rule_takes_its_first_step_from_the_settings() -> None:
    rule = make_rule("search", _geometry(), SETTINGS)
    state = rule.init()
    assert getattr(state, "alpha", None) == SETTINGS.step_size


def test_the_sampler_does_not_ask_which_rule_it_holds() -> None:
    """No comparison in sampler.py against a rule's name, and no test of a rule state's type:
    the rule object answers (:class:`~optuna_fmd.outer._rules.OuterRule`)."""
    tree = ast.parse(SAMPLER.read_text())
    names = set(OUTER_RULES)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            literals = {s.value for s in sides if isinstance(s, ast.Constant)}
            if literals & names or any(
                isinstance(s, ast.Attribute) and s.attr == "name" for s in sides
            ):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Match):
            found.append(f"line {node.lineno}: match")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            kinds = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
            if "State" in kinds:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert found == []

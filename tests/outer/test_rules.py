"""One interface for the outer rules: every rule in the registry satisfies it, steps from its
own state through JSON, and the sampler holds a rule object without asking its name."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

import optuna_fmd as fmd
from optuna_fmd.outer import AdamSettings, SearchSettings, SignSettings, rule_settings
from optuna_fmd.outer._geometry import Coord, Geometry
from optuna_fmd.outer._point import Point, Proposal
from optuna_fmd.outer._registry import OuterRule, rules
from optuna_fmd.outer._state import OuterState

#: The rules this package registers, in their order (a test may register more for a while).
OUTER_RULES = ("search", "sign", "adam")
SAMPLER = Path(__file__).resolve().parents[2] / "optuna_fmd" / "sampler.py"
#: Each rule's settings in these tests.
SETTINGS = {
    "search": fmd.outer.search(step=0.1),
    "sign": fmd.outer.sign(step_size=0.1, max_backtracks=2),
    "adam": fmd.outer.adam(step_size=0.1, max_backtracks=2),
}


def make_rule(name: str) -> OuterRule:
    return SETTINGS[name].build(_geometry(), 0)


def _geometry() -> Geometry:
    coords = [Coord("log", 1e-3, 1.0), Coord("linear", -1.0, 1.0)]
    return Geometry(coords, [True, False], [True, True], [0.05, 0.0], blocks=[0, 1])


def _f(x: list[float]) -> float:
    return math.log(x[0] / 0.2) ** 2 + (x[1] - 0.3) ** 2 + 1.0


def _g(x: list[float]) -> list[float]:
    return [2 * math.log(x[0] / 0.2) / x[0], 2 * (x[1] - 0.3)]


def test_the_registry_holds_every_outer_rule_with_its_defaults() -> None:
    assert fmd.outer.rule_names() == OUTER_RULES
    assert {r.name: r.settings() for r in rules()} == {
        "search": fmd.outer.search(),
        "sign": fmd.outer.sign(),
        "adam": fmd.outer.adam(),
    }
    assert (fmd.outer.search().step, fmd.outer.sign().step_size, fmd.outer.adam().step_size) == (
        0.05,
        0.1,
        0.1,
    )
    assert not fmd.outer.search(hypergradients=False).hypergradients


def test_each_rule_has_its_own_settings() -> None:
    assert isinstance(fmd.outer.search(explore=3), SearchSettings)
    assert isinstance(fmd.outer.sign(min_step=0.01), SignSettings)
    assert isinstance(fmd.outer.adam(clip=None), AdamSettings)
    with pytest.raises(TypeError):
        fmd.outer.sign(betas=(0.9, 0.99))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        fmd.outer.adam(explore=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fmd.outer.search(step=0.0), "`step` must be positive"),
        (lambda: fmd.outer.search(explore=-1), "`explore` must be a non-negative int"),
        (lambda: fmd.outer.search(hypergradients=1), "`hypergradients` must be a bool"),
        (lambda: fmd.outer.sign(step_size=0.0), "`step_size` must be positive"),
        (lambda: fmd.outer.sign(trust_region=-1.0), "`trust_region` must be positive"),
        (lambda: fmd.outer.sign(min_step=0.0), "`min_step` must be positive"),
        (lambda: fmd.outer.adam(max_backtracks=-1), "`max_backtracks` must be a non-negative"),
        (lambda: fmd.outer.adam(betas=(0.9, 1.0)), "`betas` must be two floats"),
        (lambda: fmd.outer.adam(clip=0.0), "`clip` must be positive"),
    ],
)
def test_bad_settings_are_refused_when_made(make, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_rule_settings_take_a_name_or_settings() -> None:
    assert rule_settings("sign") == fmd.outer.sign()
    own = fmd.outer.adam(clip=2.0)
    assert rule_settings(own) is own
    with pytest.raises(ValueError, match="must be one of"):
        rule_settings("lbfgs")
    with pytest.raises(TypeError, match="a rule's name"):
        rule_settings(3)


@pytest.mark.parametrize("name", OUTER_RULES)
def test_every_rule_satisfies_the_interface(name: str) -> None:
    rule: OuterRule = make_rule(name)
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
    rule = make_rule(name)
    others = [make_rule(n).init() for n in OUTER_RULES if n != name]
    assert not any(rule.accepts(s) for s in others)


@pytest.mark.parametrize("name", OUTER_RULES)
def test_every_rule_descends_a_bowl_from_its_stored_state(name: str) -> None:
    rule = make_rule(name)
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
    rule = make_rule("search")
    state = rule.init()
    assert getattr(state, "alpha", None) == SETTINGS["search"].step == 0.1


def test_the_sampler_does_not_ask_which_rule_it_holds() -> None:
    """No comparison in sampler.py against a rule's name, and no test of a rule state's type:
    the rule object answers (:class:`~optuna_fmd.outer._registry.OuterRule`)."""
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

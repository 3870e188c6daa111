"""The paper's sign and Adam rules as pure functions, driven by closed-form objectives."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from optuna_fmd.outer._adam import AdamStep
from optuna_fmd.outer._geometry import Coord
from optuna_fmd.outer._paper import Backtracked, GradientRule, Summit, decide, fresh_state
from optuna_fmd.outer._point import Point
from optuna_fmd.outer._sign import SignStep
from optuna_fmd.outer._state import OuterState


def _rule(name: str, **kw: float) -> GradientRule:
    coords = [Coord("log", 1e-3, 1.0), Coord("linear", -1.0, 1.0)]
    size = kw.pop("step_size", 0.05)
    step = SignStep(size, kw.pop("min_step", 1e-3)) if name == "sign" else AdamStep(size)
    settings = {"trust": 0.25, "backtrack_tol": 0.02, "max_backtracks": 2, **kw}
    return GradientRule(step, coords, [0.05, 0.0], **settings)  # type: ignore[arg-type]


def _f(x: list[float]) -> float:
    return math.log(x[0] / 0.2) ** 2 + (x[1] - 0.3) ** 2 + 1.0


def _g(x: list[float]) -> list[float]:
    return [2 * math.log(x[0] / 0.2) / x[0], 2 * (x[1] - 0.3)]


def _stored(state: Backtracked, origin: str = "init") -> OuterState:
    """``state`` as the sampler stores it, through JSON and back."""
    return OuterState.from_json(OuterState(state, origin).to_json())


def _drive(rule: GradientRule, trials: int) -> list[Point]:
    seen: list[Point] = []
    for number in range(trials):
        x, state, origin, _ = decide(rule, seen, 1.0)
        stored = _stored(state, origin)
        assert stored.rule == state
        seen.append(Point(number, x, _f(x), False, _g(x), stored))
    return seen


@pytest.mark.parametrize("name", ["sign", "adam"])
def test_each_rule_descends_a_bowl_from_the_start(name: str) -> None:
    seen = _drive(_rule(name), 40)
    assert seen[0].x == [0.05, 0.0] and seen[0].state.origin == "init"  # type: ignore[union-attr]
    assert min(p.value for p in seen) < _f([0.05, 0.0]) - 0.9 * (_f([0.05, 0.0]) - 1.0)  # type: ignore[operator]
    origins = {p.state.origin for p in seen}  # type: ignore[union-attr]
    assert origins <= {"init", "step", "backtrack", "converged"} and "step" in origins


def test_the_sign_rule_halves_a_coordinates_step_when_its_sign_flips() -> None:
    rule = _rule("sign")
    start = Point(0, [0.05, 0.0], 2.0, False, [-1.0, -1.0], _stored(fresh_state(rule)))
    x1, s1, _, _ = decide(rule, [start], 1.0)
    assert s1.s == (0.05, 0.05) and s1.sign == (-1, -1)
    u = math.log(1.0 / 1e-3)  # the log coordinate's unit
    assert math.log(x1[0] / 0.05) == pytest.approx(0.05 * u)
    flipped = Point(1, x1, 1.9, False, [1.0, -1.0], _stored(s1))  # lr's sign flips
    _, s2, _, _ = decide(rule, [start, flipped], 1.0)
    assert s2.s == (0.025, 0.05) and s2.outer_step == 2


def test_a_clearly_worse_step_backtracks_from_the_best_with_half_the_scale_then_stops() -> None:
    rule = _rule("sign")
    best = Point(0, [0.05, 0.0], 1.0, False, [-1.0, -1.0], _stored(fresh_state(rule)))
    seen = [best]
    scales = []
    for number in range(1, 5):
        x, state, origin, _ = decide(rule, seen, 1.0)
        scales.append((origin, state.scale))
        stored = _stored(state, origin)
        seen.append(Point(number, x, 5.0, False, [1.0, 1.0], stored))  # always far worse
    assert scales[0] == ("step", 1.0)
    assert scales[1:3] == [("backtrack", 0.5), ("backtrack", 0.25)]
    assert scales[3][0] == "converged"
    x, state, _, _ = decide(rule, seen, 1.0)
    assert state.converged and x == best.x and state.best == Summit(0, 1.0)


def test_warnings_come_back_as_notes_and_a_maximize_best_is_in_study_units() -> None:
    rule = _rule("adam")
    x, state, origin, notes = decide(rule, [Point(0, [0.05, 0.0], 1.0, False, None, None)], -1.0)
    assert x == [0.05, 0.0] and origin == "init"
    assert [n.key for n in notes] == ["no-grad"]
    huge = Point(0, [0.05, 0.0], -2.0, False, [1e300, 0.0], _stored(fresh_state(rule)))
    x, state, _, notes = decide(rule, [huge], -1.0)
    assert "exploding" in [n.key for n in notes] and all(math.isfinite(v) for v in x)
    assert state.best == Summit(0, 2.0)


def test_the_rules_import_neither_torch_nor_optuna() -> None:
    code = (
        "import sys; import optuna_fmd.outer._sign, optuna_fmd.outer._adam; "
        "print('torch' in sys.modules, 'optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

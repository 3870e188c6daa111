"""The trial sequences of the outer rules, pinned: a change of the sampler's structure must not
change what it proposes. Closed-form objectives drive each rule on each kind of space: a tilted
bowl over every param with its exact gradient, a seed-dependent wobble for population members,
and variants whose hypergradient is 1,000x too large and of the wrong sign (every trial's, or
one member's of each iterate). The params of every trial are compared bit for bit with
``tests/data/sequences.json``.

``OPTUNA_FMD_UPDATE_PINS=1`` rewrites the file and fails (only when the search itself is meant
to change).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd.sampler import STATE_KEY
from optuna_fmd.space import default_family_space, default_space, per_layer_space

from .._pins import pinned

optuna.logging.set_verbosity(optuna.logging.WARNING)

PINS = Path(__file__).parents[1] / "data" / "sequences.json"
TRIALS = 48


def _objective(
    space: fmd.ScheduleSpace, *, liar: bool = False
) -> Callable[[optuna.trial.Trial], float]:
    """A bowl in the sampler's own coordinates with a valley across them, tilted per member."""
    dists = space.distributions()
    names = list(dists)
    targets = {
        n: (lo * hi) ** 0.5 if log else lo + 0.3 * (hi - lo) for n, (lo, hi, log) in dists.items()
    }

    def coordinate(n: str, x: float) -> tuple[float, float]:
        lo, hi, log = dists[n]
        if log:
            return math.log(x / targets[n]) / math.log(hi / lo), 1 / (x * math.log(hi / lo))
        return (x - targets[n]) / (hi - lo), 1 / (hi - lo)

    def objective(trial: optuna.trial.Trial) -> float:
        x = {n: trial.suggest_float(n, lo, hi, log=log) for n, (lo, hi, log) in dists.items()}
        state = trial.storage.get_trial_system_attrs(trial._trial_id).get(STATE_KEY, {})
        wobble = 0.01 * (1 + int(state.get("member", 0) or 0))
        d = {n: coordinate(n, x[n]) for n in names}
        s = sum(v for v, _ in d.values())
        value = 0.1 + s * s + sum(v * v for v, _ in d.values()) + wobble * d[names[0]][0]
        if state.get("hypergradient", True):
            grad = {
                n: (2 * s + 2 * v + (wobble if n == names[0] else 0.0)) * c
                for n, (v, c) in d.items()
            }
            if liar and state.get("member") in (None, 1):  # with members, member 1 lies
                grad = {n: -1000 * g for n, g in grad.items()}
            trial.set_user_attr("hypergradient", grad)
        return value

    return objective


def _cases() -> dict[str, tuple[fmd.ScheduleSpace, dict, bool]]:
    family = default_family_space("sgd", windows=4)
    layers = per_layer_space({"l0": "1.*", "l1": "3.*", "l2": "5.*"}, windows=4)
    return {
        "family": (family, {}, False),
        "family-pop2": (family, {"population": 2}, False),
        "family-liar": (family, {}, True),
        "family-liar-pop2": (family, {"population": 2}, True),
        "family-pattern": (family, {"outer": fmd.outer.search(hypergradients=False)}, False),
        "windows": (default_space("sgd", windows=3), {}, False),
        "per-layer": (layers, {"outer": fmd.outer.search(explore=0)}, False),
        "per-layer-pop2-liar": (
            layers,
            {"population": 2, "outer": fmd.outer.search(explore=0)},
            True,
        ),
        "per-layer-explore": (layers, {}, False),
        "per-layer-explore-pop2": (layers, {"population": 2}, False),
        "sign": (default_space("sgd", windows=3), {"outer": "sign"}, False),
        "adam": (default_space("sgd", windows=3), {"outer": "adam"}, False),
    }


def _sequence(space: fmd.ScheduleSpace, kwargs: dict, liar: bool) -> list[list[float]]:
    study = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0, **kwargs))
    study.optimize(_objective(space, liar=liar), n_trials=TRIALS)
    return [[t.params[n] for n in space.param_names()] for t in study.trials]


def test_every_rule_proposes_the_pinned_sequence() -> None:
    got = {name: _sequence(*case) for name, case in _cases().items()}
    pins = pinned(PINS, got)
    assert sorted(pins) == sorted(got)
    for name, seq in got.items():
        assert seq == pins[name], f"{name}: the proposals changed"


def test_the_pinned_cases_reach_every_kind_of_proposal() -> None:
    """The pins cover the search's phases: the climb (its lines and bracket points), the
    scale search, the exploration, the pattern search, and both kinds of check either way."""
    kinds: set[str] = set()
    checks: set[tuple[str, bool]] = set()
    for space, kwargs, liar in _cases().values():
        if kwargs.get("outer", "search") in ("sign", "adam"):
            continue
        study = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0, **kwargs))
        study.optimize(_objective(space, liar=liar), n_trials=TRIALS)
        for t in study.trials:
            state = t.system_attrs[STATE_KEY]
            kinds.add(state["probe"]["kind"])
            if "check" in state:
                checks.add((state["check"]["kind"], state["check"]["agrees"]))
    assert {"start", "scale", "explore", "pattern", "climb", "bracket"} <= kinds
    assert {("probe", True), ("probe", False), ("members", True), ("members", False)} <= checks


@pytest.mark.parametrize("name", ["family", "per-layer", "per-layer-explore"])
def test_the_search_improves_on_the_pinned_bowls(name: str) -> None:
    space, kwargs, liar = _cases()[name]
    study = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0, **kwargs))
    study.optimize(_objective(space, liar=liar), n_trials=TRIALS)
    assert study.best_value < 0.5 * study.trials[0].value

"""What the report, plots and dashboard read of a study: names, best iterate, origins."""

from __future__ import annotations

import math

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_fmd.sampler import STATE_KEY
from optuna_fmd.space import default_family_space
from optuna_fmd.visualization._schedules import _fitted_range, _get_schedule_info
from optuna_fmd.visualization._study import (
    StudyNames,
    best_iterate,
    best_of,
    hypergradient_note,
    hypergradient_status,
    origin_words,
)


def test_names_read_a_refiner_through_the_space_or_the_stored_windows() -> None:
    space = default_family_space("sgd", windows=2)
    params = space.initial_params()
    stored = {"schedules": space.from_params(params)}
    for names in (StudyNames(space), StudyNames()):
        fam = names.family_params(params, stored)
        assert fam["lr"] == {
            "peak": 0.05,
            "warmup": 0.0,
            "final": 0.0,
            "delta_0": 0.0,
            "delta_1": 0.0,
        }
        assert fam["momentum"] == {"value": 0.9}
        assert names.schedules(params, stored) == space.from_params(params)
    # without the stored windows, no space: only window params make schedules (none here)
    assert StudyNames().schedules(params, {}) == {}


def test_best_of_compares_iterates_by_their_mean_and_names_the_luckiest() -> None:
    points = [(0, 0, 0.30), (1, 0, 0.50), (2, 1, 0.34), (3, 1, 0.36), (4, 2, 0.1)]
    best = best_of(points, 2)  # iterate 2 is short of a member: left out
    assert best is not None and best.numbers == [2, 3] and math.isclose(best.value, 0.35)
    assert best.luckiest == (4, 0.1)
    top = best_of(points, 2, maximize=True)
    assert top is not None and top.numbers == [0, 1] and top.luckiest == (1, 0.5)
    single = best_of([(0, None, 0.2), (1, None, 0.1)], 1)
    assert single is not None and single.numbers == [1] and single.luckiest is None
    assert best_of([], 2) is None


def _trial(value: float | None, state: dict | None, **attrs: object) -> optuna.trial.FrozenTrial:
    t = create_trial(
        params={"lr_0": 0.1},
        distributions={"lr_0": FloatDistribution(1e-3, 1.0, log=True)},
        value=value,
        user_attrs=dict(attrs),
        system_attrs={} if state is None else {STATE_KEY: state},
        state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
    )
    return t


def test_best_iterate_reads_the_members_from_the_sampler_state() -> None:
    s = optuna.create_study()
    for number, value in enumerate([0.3, 0.5, 0.34, 0.36]):
        s.add_trial(_trial(value, {"iterate": number // 2, "member": number % 2}))
    best = best_iterate(s)
    assert best is not None and best.numbers == [2, 3] and best.luckiest == (0, 0.3)
    assert _get_schedule_info(s).best == 2  # the plots' best is the same iterate


def test_origin_words_say_what_each_probe_is() -> None:
    names = ["lr_peak", "lr_warmup"]
    scale = {"origin": "scale", "probe": {"kind": "scale", "offset": math.log(4.0)}}
    assert origin_words(scale) == ("scale", origin_words(scale)[1])
    assert "lr scale times 4 of the start" in origin_words(scale)[1]
    start = {"origin": "init", "probe": {"kind": "start"}}
    assert origin_words(start)[0] == "start"
    pattern = {
        "origin": "pattern",
        "pattern": {"once": True},
        "x": [0.4, 0.125],
        "incumbent": {"x": [0.4, 0.0]},
    }
    assert origin_words(pattern, names)[1].startswith("coarse pass: lr_warmup moved")
    line = {"origin": "line", "probe": {"kind": "line", "alpha": 0.05}}
    assert "step 0.05 units" in origin_words(line)[1]
    assert origin_words({"origin": "backtrack", "rule": "sign", "base": 3})[1].startswith(
        "back to the best trial 3"
    )
    assert origin_words(None) == ("", "") and origin_words({"origin": "odd"}) == ("odd", "odd")


def test_hypergradient_status_and_the_empty_panels_note() -> None:
    plain = {"hypergradient": False, "origin": "scale", "probe": {"kind": "scale"}}
    assert hypergradient_status(_trial(0.3, plain)) == "no: plain probe"
    assert hypergradient_status(_trial(0.3, {}, hypergradient={"lr_0": 1.0})) == "yes"
    assert hypergradient_status(_trial(math.inf, {}, diverged=True)) == "no: diverged"
    assert hypergradient_status(_trial(0.3, None)) == "no: not asked for"
    assert hypergradient_status(_trial(None, {})) == "no: fail"
    s = optuna.create_study()
    assert hypergradient_note(s, 0) == "no hypergradient yet: no trial has finished"
    s.add_trial(_trial(0.3, plain))
    assert hypergradient_note(s, 0).startswith("no hypergradient yet: the first 1 trials search")
    s.add_trial(_trial(0.2, {}, hypergradient={"lr_0": 1.0}))
    assert hypergradient_note(s, 1).startswith("hypergradients of 1 of 2 finished trials")
    other = optuna.create_study()
    other.add_trial(_trial(0.3, None))
    assert "hypergradient=False" in hypergradient_note(other, 0)


def test_fitted_range_shows_small_flat_values() -> None:
    lo, hi = _fitted_range([5e-4, 5e-4])
    assert 4e-4 < lo < 5e-4 < hi < 6e-4
    assert _fitted_range([0.0]) == (-1e-3, 1e-3)
    lo, hi = _fitted_range([0.8, 0.9])
    assert lo < 0.8 and hi > 0.9 and hi - lo < 0.2

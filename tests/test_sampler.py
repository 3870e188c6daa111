"""FMDSampler: the FDS outer loop as an Optuna sampler (Micaelli & Storkey, NeurIPS 2021).

Most tests use a quadratic objective with a closed-form hypergradient (no training); the
optimisation and stability tests train real Digits episodes.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd.sampler import STATE_KEY
from optuna_fmd.space import Constant, Cosine, Refiner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_space(windows: int = 2) -> fmd.ScheduleSpace:
    return fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=windows, low=1e-3, high=1.0, log=True, init=0.05),
            "momentum": fmd.Schedule(windows=windows, low=0.0, high=0.99, init=0.9),
        }
    )


SPACE = make_space()
TARGET = {"lr": 0.2, "momentum": 0.5}


def quad_objective(
    space: fmd.ScheduleSpace = SPACE,
    target: dict[str, float] | None = None,
    *,
    hypergradient: bool = True,
) -> Callable[[optuna.trial.Trial], float]:
    """f = sum over windows of ((u - u*) / range)^2 with u = log x for log hypers, else x."""
    target = target or TARGET

    def objective(trial: optuna.trial.Trial) -> float:
        value, grad = 0.0, {}
        for name, s in space.items():
            for k in range(s.windows):
                p = f"{name}_{k}"
                x = trial.suggest_float(p, s.low, s.high, log=s.log)
                if s.log:
                    r = math.log(s.high / s.low)
                    d = (math.log(x) - math.log(target[name])) / r
                    grad[p] = 2 * d / r / x
                else:
                    r = s.high - s.low
                    d = (x - target[name]) / r
                    grad[p] = 2 * d / r
                value += d * d
        if hypergradient:
            trial.set_user_attr("hypergradient", grad)
        return value

    return objective


def params_seq(study: optuna.Study) -> list[dict[str, float]]:
    return [dict(t.params) for t in study.trials]


def state_of(trial: optuna.trial.FrozenTrial) -> dict:
    return trial.system_attrs[STATE_KEY]


def run(sampler: fmd.FMDSampler, n: int, objective=None, **kw) -> optuna.Study:  # type: ignore[no-untyped-def]
    study = optuna.create_study(sampler=sampler, **kw)
    study.optimize(objective or quad_objective(), n_trials=n)
    return study


# -- proposals -------------------------------------------------------------------------------
def test_first_trial_is_init_and_values_are_native_floats_in_bounds() -> None:
    study = run(fmd.FMDSampler(SPACE, outer="sign"), 6)
    assert study.trials[0].params == {
        "lr_0": 0.05,
        "lr_1": 0.05,
        "momentum_0": 0.9,
        "momentum_1": 0.9,
    }
    assert state_of(study.trials[0])["origin"] == "init"
    for t in study.trials:
        for name, v in t.params.items():
            assert type(v) is float
            d = SPACE[name.rsplit("_", 1)[0]]
            assert d.low <= v <= d.high


def test_sign_step_moves_against_hypergradient_in_transformed_coordinates() -> None:
    study = run(fmd.FMDSampler(SPACE, outer=fmd.outer.sign(step_size=0.1)), 2)
    _, t1 = study.trials
    r = math.log(1.0 / 1e-3)
    # lr 0.05 < target 0.2: gradient negative, lr grows by exp(0.1 * log range)
    assert t1.params["lr_0"] == pytest.approx(0.05 * math.exp(0.1 * r))
    # momentum 0.9 > target 0.5: moves down by 0.1 * 4 logit units
    p = 0.9 / 0.99
    u = math.log(p / (1 - p)) - 0.4
    assert t1.params["momentum_0"] == pytest.approx(0.99 / (1 + math.exp(-u)))
    assert state_of(t1)["origin"] == "step" and state_of(t1)["base"] == 0
    assert state_of(t1)["outer_step"] == 1


def test_sign_rule_halves_steps_on_sign_flips_and_converges() -> None:
    sampler = fmd.FMDSampler(SPACE, outer=fmd.outer.sign(step_size=0.1))
    study = run(sampler, 40)
    assert study.best_value < 1e-3
    s = state_of(study.trials[-1])["s"]
    assert max(s) < 0.1  # halved at least once per coordinate
    last = study.trials[-1].params
    assert last["momentum_0"] == pytest.approx(0.5, abs=0.03)
    assert last["lr_1"] == pytest.approx(0.2, rel=0.1)


def test_sign_rule_reports_convergence() -> None:
    sampler = fmd.FMDSampler(SPACE, outer=fmd.outer.sign(step_size=0.1, min_step=0.01))
    study = run(sampler, 30)
    assert sampler.is_converged(study)
    origins = [state_of(t)["origin"] for t in study.trials]
    assert "converged" in origins
    # once converged, the sampler proposes the best iterate
    assert study.trials[-1].params == study.best_trial.params


def test_adam_rule_converges_and_keeps_moments_in_state() -> None:
    sampler = fmd.FMDSampler(SPACE, outer=fmd.outer.adam(step_size=0.1))
    study = run(sampler, 40)
    assert study.best_value < 1e-2
    state = state_of(study.trials[-1])
    assert state["rule"] == "adam"
    assert len(state["m"]) == len(state["v"]) == SPACE.n_params
    for t in study.trials[1:]:  # each proposal is one Adam update of the state it stepped from
        st = state_of(t)
        assert st["t"] == state_of(study.trials[st["base"]])["t"] + 1, t.number


def test_transformed_hypergradient_matches_a_finite_difference_in_u() -> None:
    """The outer step uses dL/du (u = log x, or the logit of the range), not dL/dx: Adam's
    first moment after one step is (1 - beta1) dL/du, checked against a central difference of
    the objective along u (the chain-rule factor dx/du is x for log, range p (1 - p) for logit).
    """
    b1 = 0.9
    study = run(fmd.FMDSampler(SPACE, outer=fmd.outer.adam(betas=(b1, 0.999))), 2)
    x0 = dict(study.trials[0].params)
    m = state_of(study.trials[1])["m"]

    def x_of(name: str, u: float) -> float:
        s = SPACE[name.rsplit("_", 1)[0]]
        if s.log:
            return math.exp(u)
        return s.low + (s.high - s.low) / (1.0 + math.exp(-u))

    def u_of(name: str, x: float) -> float:
        s = SPACE[name.rsplit("_", 1)[0]]
        if s.log:
            return math.log(x)
        p = (x - s.low) / (s.high - s.low)
        return math.log(p / (1.0 - p))

    def value(params: dict[str, float]) -> float:
        return quad_objective()(optuna.trial.FixedTrial(params))

    h = 1e-5
    for i, name in enumerate(SPACE.param_names()):
        u = u_of(name, x0[name])
        up, down = dict(x0), dict(x0)
        up[name], down[name] = x_of(name, u + h), x_of(name, u - h)
        dl_du = (value(up) - value(down)) / (2 * h)
        assert m[i] / (1 - b1) == pytest.approx(dl_du, rel=1e-6), name
        dl_dx = study.trials[0].user_attrs["hypergradient"][name]
        assert abs(dl_du - dl_dx) > 1e-3 * abs(dl_dx)  # the factor matters here


def test_adam_step_is_bounded_by_trust_region() -> None:
    sampler = fmd.FMDSampler(SPACE, outer=fmd.outer.adam(step_size=5.0, trust_region=0.05))
    study = run(sampler, 2)
    lr0, lr1 = study.trials[0].params["lr_0"], study.trials[1].params["lr_0"]
    assert abs(math.log(lr1 / lr0)) <= 0.05 * math.log(1000) + 1e-9


def test_projection_into_bounds() -> None:
    target = {"lr": 5.0, "momentum": 2.0}  # outside the bounds
    space = SPACE

    def objective(trial: optuna.trial.Trial) -> float:
        return quad_objective(space, target)(trial)

    study = run(fmd.FMDSampler(SPACE, outer=fmd.outer.sign(step_size=0.3)), 8, objective)
    assert study.trials[-1].params["lr_0"] == 1.0
    assert study.trials[-1].params["momentum_1"] == 0.99


def test_state_is_json_and_proposals_are_deterministic() -> None:
    a = run(fmd.FMDSampler(SPACE, outer="adam"), 8)
    b = run(fmd.FMDSampler(SPACE, outer="adam"), 8)
    assert params_seq(a) == params_seq(b)
    for t in a.trials:
        state = state_of(t)
        assert json.loads(json.dumps(state, allow_nan=False)) == state
        for key in ("m", "v", "t", "scale", "outer_step", "best", "origin"):
            assert key in state
        assert "s" not in state and "sign" not in state  # the sign rule's own state


# -- stability ---------------------------------------------------------------------------------
def _with_bad_trial(
    bad: Callable[[], float], at: int = 2
) -> Callable[[optuna.trial.Trial], float]:
    inner = quad_objective()

    def objective(trial: optuna.trial.Trial) -> float:
        value = inner(trial)
        if trial.number == at:
            trial.set_user_attr("hypergradient", None)
            return bad()
        return value

    return objective


def _raise() -> float:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    "bad",
    [lambda: float("inf"), lambda: float("nan"), _raise, lambda: 100.0],
    ids=["diverged", "nan", "failed", "clearly-worse"],
)
def test_backtracks_to_best_with_shorter_step(bad: Callable[[], float]) -> None:
    sampler = fmd.FMDSampler(SPACE, outer="sign")
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(_with_bad_trial(bad), n_trials=5, catch=(RuntimeError,))
    s3 = state_of(study.trials[3])
    assert s3["origin"] == "backtrack"
    assert s3["base"] == 1  # the best trial before the bad one
    assert s3["scale"] == 0.5
    # the backtracking step from trial 1 is shorter than the step trial 1 -> trial 2 took
    p1, p2, p3 = (study.trials[i].params["momentum_0"] for i in (1, 2, 3))
    assert abs(p3 - p1) < abs(p2 - p1)
    assert state_of(study.trials[4])["origin"] == "step"


def test_repeated_failures_end_in_convergence_not_a_crash() -> None:
    inner = quad_objective()

    def objective(trial: optuna.trial.Trial) -> float:
        inner(trial)
        return float("inf") if trial.number >= 1 else 1.0

    sampler = fmd.FMDSampler(SPACE, outer=fmd.outer.sign(max_backtracks=3))
    study = run(sampler, 8, objective)
    assert sampler.is_converged(study)
    assert study.trials[-1].params == study.trials[0].params


# -- trials without a hypergradient ------------------------------------------------------------
def test_enqueued_trial_without_hypergradient_falls_back_and_warns_once() -> None:
    sampler = fmd.FMDSampler(SPACE, outer="sign")
    study = run(sampler, 2)
    study.enqueue_trial({"lr_0": 0.01, "lr_1": 0.01, "momentum_0": 0.1, "momentum_1": 0.1})
    study.enqueue_trial({"lr_0": 0.02, "lr_1": 0.02, "momentum_0": 0.1, "momentum_1": 0.1})
    plain = quad_objective(hypergradient=False)
    with pytest.warns(UserWarning, match="no usable hypergradient") as rec:
        study.optimize(plain, n_trials=2)
        study.optimize(quad_objective(), n_trials=2)
    assert sum("no usable hypergradient" in str(w.message) for w in rec) == 1
    assert study.trials[2].params["lr_0"] == 0.01  # enqueued values respected
    assert state_of(study.trials[4])["origin"] == "fallback"
    assert state_of(study.trials[4])["base"] == 1  # best trial with a hypergradient


def test_enqueued_trial_with_hypergradient_is_a_starting_point() -> None:
    sampler = fmd.FMDSampler(SPACE, outer="sign")
    study = optuna.create_study(sampler=sampler)
    start = {"lr_0": 0.01, "lr_1": 0.01, "momentum_0": 0.2, "momentum_1": 0.2}
    study.enqueue_trial(start)
    study.optimize(quad_objective(), n_trials=2)
    assert study.trials[0].params == start
    assert study.trials[1].params["lr_0"] > 0.01 and study.trials[1].params["momentum_0"] > 0.2


def test_corrupt_hypergradient_attr_warns_and_is_ignored() -> None:
    inner = quad_objective()

    def objective(trial: optuna.trial.Trial) -> float:
        value = inner(trial)
        if trial.number == 1:
            trial.set_user_attr("hypergradient", {"lr_0": "oops"})
        return value

    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    with pytest.warns(UserWarning, match="not a dict of finite"):
        study.optimize(objective, n_trials=4)
    assert state_of(study.trials[2])["origin"] == "fallback"


def test_objective_without_hypergradients_warns_and_proposes_init() -> None:
    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    with pytest.warns(UserWarning, match="no finished trial has a finite value and a hyper"):
        study.optimize(quad_objective(hypergradient=False), n_trials=3)
    assert all(t.params == study.trials[0].params for t in study.trials)


def test_trials_from_another_sampler_are_used() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(quad_objective(), n_trials=3)
    values = [t.value for t in study.trials]
    best = min(range(3), key=lambda i: values[i])  # type: ignore[arg-type, return-value]
    study.sampler = fmd.FMDSampler(SPACE, outer="sign")
    with pytest.warns(UserWarning, match="not proposed by FMDSampler"):
        study.optimize(quad_objective(), n_trials=2)
    # the latest random trial is clearly worse than the best one: step from the best instead
    assert values[2] > values[best] * 1.02, values  # type: ignore[operator]
    state = state_of(study.trials[3])
    assert (state["origin"], state["base"], state["outer_step"]) == ("fallback", best, 1)
    assert study.trials[3].params != fmd.FMDSampler(SPACE, outer="sign")._space.to_params(
        SPACE.initial_values()
    )


def test_state_from_another_space_is_ignored_with_a_warning() -> None:
    study = run(fmd.FMDSampler(SPACE, outer="sign"), 2)
    study.sampler = fmd.FMDSampler(SPACE, outer="adam")
    with pytest.warns(UserWarning, match="another schedule space or outer rule"):
        study.optimize(quad_objective(), n_trials=1)
    assert state_of(study.trials[2])["rule"] == "adam"


# -- direction ---------------------------------------------------------------------------------
def mirrored(objective: Callable[[optuna.trial.Trial], float]) -> Callable[..., float]:
    """``-objective`` with its hypergradient negated: the same problem, to be maximised."""

    def wrapped(trial: optuna.trial.Trial) -> float:
        value = objective(trial)
        if "hypergradient" in trial.user_attrs:
            grad = {k: -g for k, g in trial.user_attrs["hypergradient"].items()}
            trial.set_user_attr("hypergradient", grad)
        return -value

    return wrapped


def test_maximize_study_ascends_where_the_value_grows_with_lr() -> None:
    """Value log(lr_0) + log(lr_1) grows with lr: a maximize study raises lr to its bound."""

    def objective(trial: optuna.trial.Trial) -> float:
        lrs = [trial.suggest_float(f"lr_{k}", 1e-3, 1.0, log=True) for k in range(2)]
        trial.set_user_attr("hypergradient", {f"lr_{k}": 1.0 / x for k, x in enumerate(lrs)})
        return sum(math.log(x) for x in lrs)

    space = fmd.ScheduleSpace(
        {"lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True, init=0.05)}
    )
    study = run(
        fmd.FMDSampler(space, outer=fmd.outer.sign(step_size=0.1)),
        6,
        objective,
        direction="maximize",
    )
    lrs = [t.params["lr_0"] for t in study.trials]
    r = math.log(1.0 / 1e-3)
    assert lrs[1] == pytest.approx(0.05 * math.exp(0.1 * r))  # one step up, in log coordinates
    assert lrs == sorted(lrs) and lrs[-1] == 1.0, lrs  # up to the bound, never down
    assert [state_of(t)["origin"] for t in study.trials[1:]] == ["step"] * 5  # no backtrack
    assert state_of(study.trials[-1])["best"] == {
        "trial": study.trials[-2].number,
        "value": study.trials[-2].value,
    }  # the best in the study's own units


@pytest.mark.parametrize(
    "kwargs",
    [
        {"outer": "sign"},
        {"outer": "adam"},
        {"outer": fmd.outer.sign(step_size=0.5, min_step=0.01)},  # backtracks and converges
        {"outer": "sign", "population": 2},
    ],
)
def test_maximize_mirrors_minimize_exactly(kwargs: dict) -> None:
    """Maximising -f with hypergradient -g proposes exactly what minimising f with g does:
    values, hypergradients, backtracking, convergence and population means all flip sign."""
    lo = run(fmd.FMDSampler(SPACE, **kwargs), 24, quad_objective())
    hi_sampler = fmd.FMDSampler(SPACE, **kwargs)
    hi = run(hi_sampler, 24, mirrored(quad_objective()), direction="maximize")
    assert params_seq(hi) == params_seq(lo)
    origins = [state_of(t)["origin"] for t in lo.trials]
    assert origins == [state_of(t)["origin"] for t in hi.trials]
    assert hi_sampler.is_converged(hi) == fmd.FMDSampler(SPACE, **kwargs).is_converged(lo)
    for a, b in zip(lo.trials, hi.trials, strict=True):
        best_lo, best_hi = state_of(a)["best"], state_of(b)["best"]
        assert (best_lo is None) == (best_hi is None)
        if best_lo is not None:
            assert best_hi == {"trial": best_lo["trial"], "value": -best_lo["value"]}
    if kwargs.get("min_step"):
        assert "backtrack" in origins and "converged" in origins, origins


# -- a well-mannered Optuna sampler -----------------------------------------------------------
def test_params_outside_the_space_use_the_independent_sampler() -> None:
    inner = quad_objective()

    def objective(trial: optuna.trial.Trial) -> float:
        extra = trial.suggest_int("layers", 1, 4)
        choice = trial.suggest_categorical("act", ["relu", "tanh"])
        assert choice in ("relu", "tanh") and 1 <= extra <= 4
        return inner(trial)

    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign", seed=1))
    with pytest.warns(UserWarning, match="not in the schedule space") as rec:
        study.optimize(objective, n_trials=4)
    assert sum("'layers'" in str(w.message) for w in rec) == 1  # once per parameter
    # exactly what the independent sampler (RandomSampler, same seed) draws on its own
    ref = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    ref.optimize(
        lambda t: (
            t.suggest_int("layers", 1, 4) + len(t.suggest_categorical("act", ["relu", "tanh"]))
        ),
        n_trials=4,
    )
    drawn = [(t.params["layers"], t.params["act"]) for t in study.trials]
    assert drawn == [(t.params["layers"], t.params["act"]) for t in ref.trials]
    assert state_of(study.trials[1])["origin"] == "step"


def test_warn_independent_sampling_false_is_silent() -> None:
    def objective(trial: optuna.trial.Trial) -> float:
        return trial.suggest_float("x", 0, 1) + quad_objective()(trial)

    study = optuna.create_study(
        sampler=fmd.FMDSampler(SPACE, outer="sign", warn_independent_sampling=False)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        study.optimize(objective, n_trials=2)


def test_reseed_rng_and_seed_reach_the_independent_sampler() -> None:
    def objective(trial: optuna.trial.Trial) -> float:
        return trial.suggest_float("x", 0, 1) + quad_objective()(trial)

    def xs(sampler: fmd.FMDSampler) -> list[float]:
        s = optuna.create_study(sampler=sampler)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s.optimize(objective, n_trials=3)
        return [t.params["x"] for t in s.trials]

    assert xs(fmd.FMDSampler(SPACE, outer="sign", seed=3)) == xs(
        fmd.FMDSampler(SPACE, outer="sign", seed=3)
    )
    sampler = fmd.FMDSampler(SPACE, outer="sign", seed=3)
    sampler.reseed_rng()
    assert xs(sampler) != xs(fmd.FMDSampler(SPACE, outer="sign", seed=3))


def test_partial_fixed_sampler_is_respected() -> None:
    sampler = optuna.samplers.PartialFixedSampler(
        {"momentum_0": 0.3}, fmd.FMDSampler(SPACE, outer="sign")
    )
    study = run(sampler, 4)  # type: ignore[arg-type]
    assert all(t.params["momentum_0"] == 0.3 for t in study.trials)
    assert study.trials[1].params["lr_0"] != study.trials[0].params["lr_0"]


def test_multi_objective_study_is_refused() -> None:
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=fmd.FMDSampler(SPACE, outer="sign")
    )
    with pytest.raises(ValueError, match="multi-objective"):
        study.ask()


def test_conditional_search_space_does_not_break_it() -> None:
    def objective(trial: optuna.trial.Trial) -> float:
        lr = [trial.suggest_float(f"lr_{k}", 1e-3, 1.0, log=True) for k in range(2)]
        if trial.number % 2:
            [trial.suggest_float(f"momentum_{k}", 0.0, 0.99) for k in range(2)]
        return sum(lr)

    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    study.optimize(objective, n_trials=5)
    assert len(study.trials) == 5
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_mismatched_distribution_goes_to_independent_sampler_with_warning() -> None:
    def objective(trial: optuna.trial.Trial) -> float:
        return sum(trial.suggest_float(f"lr_{k}", 1e-4, 1.0, log=True) for k in range(2))

    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    with pytest.warns(UserWarning, match="lr_0"):
        study.optimize(objective, n_trials=2)
    assert all(1e-4 <= t.params["lr_0"] <= 1.0 for t in study.trials)


def test_ask_tell() -> None:
    sampler = fmd.FMDSampler(SPACE, outer="sign")
    study = optuna.create_study(sampler=sampler)
    objective = quad_objective()
    for _ in range(4):
        trial = study.ask()
        study.tell(trial, objective(trial))
    ref = run(fmd.FMDSampler(SPACE, outer="sign"), 4)
    assert params_seq(study) == params_seq(ref)


def test_n_jobs_two() -> None:
    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    study.optimize(quad_objective(), n_trials=8, n_jobs=2)
    assert len(study.trials) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert study.best_value < study.trials[0].value


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fmd.FMDSampler(SPACE, outer="sgd"), "`outer` must be one of"),
        (lambda: fmd.outer.search(step=0.0), "`step` must be positive"),
        (lambda: fmd.outer.sign(trust_region=-1.0), "`trust_region` must be positive"),
        (lambda: fmd.outer.sign(max_backtracks=-1), "`max_backtracks` must be a non-negative"),
        (lambda: fmd.outer.adam(betas=(0.9, 1.0)), "`betas` must be two floats"),
    ],
)
def test_bad_arguments(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_a_rule_setting_passed_to_the_sampler_itself_is_refused() -> None:
    """The rules' settings belong to their factories (``fmd.outer.sign(step_size=...)``); the
    sampler takes none of them as its own keyword."""
    for keyword in ("step_size", "trust_region", "explore", "hypergradients"):
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{keyword}'"):
            fmd.FMDSampler(SPACE, **{keyword: 0.1})


def test_the_rule_and_its_settings_are_told_apart_by_the_state() -> None:
    """A study continued with other settings of the same rule: the stored state belongs to
    another space fingerprint only when the settings change what is proposed."""
    a = fmd.FMDSampler(FAMILY_SPACE, outer=fmd.outer.search(explore=4), seed=1)
    b = fmd.FMDSampler(FAMILY_SPACE, outer="search", seed=1)
    c = fmd.FMDSampler(FAMILY_SPACE, outer=fmd.outer.search(hypergradients=False), seed=1)
    assert len({a._fingerprint, b._fingerprint, c._fingerprint}) == 3
    assert fmd.FMDSampler(FAMILY_SPACE, outer=fmd.outer.search())._fingerprint == b._fingerprint


def test_space_must_be_a_schedule_space() -> None:
    with pytest.raises(TypeError, match="`space` must be a ScheduleSpace"):
        fmd.FMDSampler({"lr": SPACE["lr"]})  # type: ignore[arg-type]


# -- real episodes -----------------------------------------------------------------------------
def test_optimises_a_poor_schedule_on_digits() -> None:
    """From constant lr 1e-3 the FMD iterates cut the validation loss clearly in 5 outer steps."""
    space = fmd.ScheduleSpace(
        {"lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True, init=1e-3)}
    )
    task = fmd.tasks.Digits(steps=60, batch_size=32)
    study = optuna.create_study(sampler=fmd.FMDSampler(space, outer="sign"))
    study.optimize(fmd.HypergradientObjective(task, space), n_trials=6)
    first = study.trials[0].value
    values = [t.value for t in study.trials]
    assert first is not None and first > 2.0  # barely trained
    assert min(values[1:]) < first - 0.5, values  # type: ignore[type-var, operator]
    assert values == sorted(values, reverse=True), values  # monotone progress from a poor start


@pytest.mark.slow
def test_stability_thirty_outer_steps_on_digits() -> None:
    space = fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=3, low=1e-3, high=1.0, log=True, init=0.05),
            "momentum": fmd.Schedule(windows=3, low=0.0, high=0.99, init=0.9),
            "weight_decay": fmd.Schedule(windows=3, low=0.0, high=1e-2, init=5e-4),
        }
    )
    task = fmd.tasks.Digits(steps=100, batch_size=32)
    sampler = fmd.FMDSampler(space, outer="sign")
    study = optuna.create_study(sampler=sampler)
    study.optimize(fmd.HypergradientObjective(task, space), n_trials=30)
    values = [t.value for t in study.trials]
    origins = [state_of(t)["origin"] for t in study.trials]
    assert not any(t.user_attrs.get("diverged") for t in study.trials), values
    assert study.best_value < 0.5 * values[0], values  # type: ignore[operator]
    # this run improves for 3 outer steps, then backtracks max_backtracks (6) times in a row
    # and reports convergence; from there on it proposes the best schedule, whose (same-seed)
    # episode gives the best value again
    assert sampler.is_converged(study)
    k = origins.index("converged")
    assert origins[:k] == ["init", "step", "step", "step"] + ["backtrack"] * 6, origins
    assert origins[k:] == ["converged"] * (30 - k)
    for t in study.trials[k:]:
        assert (t.params, t.value) == (study.best_trial.params, study.best_value)


def test_trial_failing_midway_is_not_proposed_again() -> None:
    inner = quad_objective()

    def objective(trial: optuna.trial.Trial) -> float:
        if trial.number == 1:
            trial.suggest_float("lr_0", 1e-3, 1.0, log=True)
            raise RuntimeError("failed before suggesting every parameter")
        return inner(trial)

    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    study.optimize(objective, n_trials=3, catch=(RuntimeError,))
    assert state_of(study.trials[2])["origin"] == "backtrack"
    assert study.trials[2].params["lr_0"] != study.trials[1].params["lr_0"]


# -- the search rule (default) on a family space ----------------------------------------------
FAMILY_SPACE = fmd.ScheduleSpace(
    {
        "lr": Refiner(Cosine(1e-3, 1.0, init=0.05, windows=3), 3),
        "momentum": Constant(0.0, 0.99, log=False, init=0.9),
    }
)


def family_objective(target: float = 0.3) -> Callable[[optuna.trial.Trial], float]:
    """A bowl over the family's params; the hypergradient only where the sampler asks."""
    dists = FAMILY_SPACE.distributions()

    def objective(trial: optuna.trial.Trial) -> float:
        x = {n: trial.suggest_float(n, lo, hi, log=log) for n, (lo, hi, log) in dists.items()}
        terms = {
            "lr_peak": (math.log(x["lr_peak"] / target), 1 / x["lr_peak"]),
            "momentum_value": (3 * (x["momentum_value"] - 0.7), 3.0),
            "lr_warmup": (x["lr_warmup"] - 0.1, 1.0),
            **{f"lr_delta_{k}": (0.5 * (x[f"lr_delta_{k}"] - 0.2), 0.5) for k in range(3)},
        }
        value = 0.1 + sum(d * d for d, _ in terms.values())
        state = trial.storage.get_trial_system_attrs(trial._trial_id).get(STATE_KEY, {})
        if state.get("hypergradient", True):  # sign and adam rules, other samplers: every trial
            grad = {n: 2 * d * c for n, (d, c) in terms.items()} | {"lr_final": 0.0}
            trial.set_user_attr("hypergradient", grad)
        return value

    return objective


def test_search_is_the_default_and_asks_for_hypergradients_at_the_start_and_line_minima() -> None:
    study = run(fmd.FMDSampler(FAMILY_SPACE), 40, family_objective())
    states = [state_of(t) for t in study.trials]
    assert states[0]["rule"] == "search" and states[0]["origin"] == "start"
    assert study.trials[0].params["lr_peak"] == 0.05 and study.trials[0].params["lr_delta_0"] == 0
    asked = [t for t, s in zip(study.trials, states, strict=True) if s["hypergradient"]]
    assert asked and all("hypergradient" in t.user_attrs for t in asked)
    assert all(
        "hypergradient" not in t.user_attrs
        for t, s in zip(study.trials, states, strict=True)
        if not s["hypergradient"]
    )
    assert asked[0].number == 0  # the climb starts with the start's hypergradient
    for t in asked[1:]:  # then only at a line's minimum: the best point its plain probes found
        earlier = study.trials[: t.number]
        line = [u for u in earlier if state_of(u)["probe"]["kind"] == "climb"]
        assert t.params == min(line, key=lambda u: u.value).params
        assert t.params in [u.params for u in line[-10:]]
    assert study.best_value < 0.1 + 0.05 * (study.trials[0].value - 0.1)


def test_search_ascends_a_maximize_study_exactly_as_it_descends_the_mirror() -> None:
    lo = run(fmd.FMDSampler(FAMILY_SPACE), 25, family_objective())
    hi = run(fmd.FMDSampler(FAMILY_SPACE), 25, mirrored(family_objective()), direction="maximize")
    assert params_seq(hi) == params_seq(lo)


def test_search_with_a_population_averages_members_and_probes_without_hypergradients() -> None:
    study = run(fmd.FMDSampler(FAMILY_SPACE, population=2), 40, family_objective())
    its = {}
    for t in study.trials:
        s = state_of(t)
        its.setdefault(s["iterate"], []).append((s["member"], t.params, s["hypergradient"]))
    for members in its.values():
        assert sorted(m for m, _, _ in members) == [0, 1]
        assert members[0][1] == members[1][1] and members[0][2] == members[1][2]
    assert any(not m[0][2] for m in its.values()) and any(m[0][2] for m in its.values())


def test_the_ablation_without_hypergradients_never_asks_for_one() -> None:
    study = run(
        fmd.FMDSampler(FAMILY_SPACE, outer=fmd.outer.search(hypergradients=False)),
        30,
        family_objective(),
    )
    assert not any(state_of(t)["hypergradient"] for t in study.trials)
    assert study.best_value < study.trials[0].value


@pytest.mark.parametrize("outer", ["search", "sign"])
def test_start_moves_where_the_loop_begins_and_nothing_else(outer: str) -> None:
    start = {"lr_peak": 0.2, "lr_warmup": 0.1, "momentum_value": 0.5}
    study = run(fmd.FMDSampler(FAMILY_SPACE, outer=outer, start=start), 12, family_objective())
    first = study.trials[0].params
    assert {k: first[k] for k in start} == start and first["lr_delta_0"] == 0.0
    # the loop moves on from there; a sampler without `start` still begins at the space's
    moved = study.trials[-1].params
    assert moved != first
    plain = run(fmd.FMDSampler(FAMILY_SPACE, outer=outer), 1, family_objective())
    assert plain.trials[0].params["lr_peak"] == 0.05


def test_start_from_another_studys_best_params_refines_them() -> None:
    tpe = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    tpe.optimize(family_objective(), n_trials=15)
    study = run(fmd.FMDSampler(FAMILY_SPACE, start=tpe.best_params), 20, family_objective())
    assert study.trials[0].value == pytest.approx(tpe.best_value)
    assert study.best_value < tpe.best_value


@pytest.mark.parametrize(
    ("start", "error", "match"),
    [
        ({"lr_peak": 2.0}, ValueError, r"`start\['lr_peak'\]` must lie inside"),
        ({"lr_peak": float("nan")}, ValueError, "must lie inside"),
        ({"lr_peak": "0.1"}, ValueError, "must lie inside"),
        ({"lr_0": 0.1}, ValueError, r"names params the space does not have: \['lr_0'\]"),
        ([0.1], TypeError, "`start` must be a mapping"),
    ],
)
def test_bad_start_is_refused_before_any_trial(start: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        fmd.FMDSampler(FAMILY_SPACE, start=start)  # type: ignore[arg-type]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_best_iterate_is_the_best_member_mean_not_the_luckiest_member(direction: str) -> None:
    space = fmd.ScheduleSpace(
        {"lr": fmd.Schedule(windows=1, low=1e-3, high=1.0, log=True, init=0.05)}
    )
    sampler = fmd.FMDSampler(
        space, outer=fmd.outer.search(hypergradients=False), population=2, seed=0
    )
    sign = 1.0 if direction == "minimize" else -1.0

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr_0", 1e-3, 1.0, log=True)
        lucky = -0.8 if trial.number == 1 else 0.0  # a member of the start is lucky
        return sign * (math.log(lr / 0.12) ** 2 + lucky)

    study = optuna.create_study(direction=direction, sampler=sampler)
    study.optimize(objective, n_trials=12)
    best = sampler.best_iterate(study)
    assert best is not None
    value, params, numbers = best.value, best.params, list(best.trials)
    by_iterate: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for t in study.trials:
        by_iterate.setdefault(t.system_attrs[STATE_KEY]["iterate"], []).append(t)
    means = {
        k: sum(t.value for t in ts) / len(ts)  # type: ignore[misc]
        for k, ts in by_iterate.items()
        if len(ts) == 2
    }
    best = min(means, key=lambda k: sign * means[k])
    assert value == pytest.approx(means[best]) and len(numbers) == 2
    assert numbers == sorted(t.number for t in by_iterate[best])
    assert params == by_iterate[best][0].params
    assert study.best_trial.number == 1 and 1 not in numbers  # the luckiest member
    single = fmd.FMDSampler(space, outer=fmd.outer.search(hypergradients=False), seed=0)
    one = optuna.create_study(direction=direction, sampler=single)
    one.optimize(objective, n_trials=4)
    alone = single.best_iterate(one)
    assert alone is not None and alone.trials == (one.best_trial.number,)
    assert alone.value == one.best_value and alone.members == 1
    assert single.best_iterate(optuna.create_study(sampler=single)) is None


# -- many layer groups: the coarse pass does not grow with them -------------------------------
def _layer_objective(
    space: fmd.ScheduleSpace, peaks: list[float]
) -> Callable[[optuna.trial.Trial], float]:
    """A bowl over every layer's log peak (targets ``peaks``) and warm-up, with its gradient."""
    dists = space.distributions()

    def objective(trial: optuna.trial.Trial) -> float:
        x = {n: trial.suggest_float(n, lo, hi, log=log) for n, (lo, hi, log) in dists.items()}
        terms = {}
        for i, target in enumerate(peaks):
            p = x[f"lr_l{i}_peak"]
            terms[f"lr_l{i}_peak"] = (math.log(p / target), 1 / p)
            terms[f"lr_l{i}_warmup"] = (x[f"lr_l{i}_warmup"] - 0.1, 1.0)
        value = 0.1 + sum(d * d for d, _ in terms.values())
        state = trial.storage.get_trial_system_attrs(trial._trial_id).get(STATE_KEY, {})
        if state.get("hypergradient"):
            grad = dict.fromkeys(dists, 0.0) | {n: 2 * d * c for n, (d, c) in terms.items()}
            trial.set_user_attr("hypergradient", grad)
        return value

    return objective


@pytest.mark.parametrize("layers", [2, 7])
def test_per_layer_spaces_climb_and_explore_at_the_same_cost_for_any_number_of_layers(
    layers: int,
) -> None:
    """From the start the climb moves each layer's peak along its own hypergradient (the
    layers' peaks part at once); at the edge the default exploration spends 24 plain
    draws, for 2 layers as for 7, that keep setting the layers apart; then the pattern
    search."""
    space = fmd.space.per_layer_space({f"l{i}": f"{2 * i + 1}.*" for i in range(layers)})
    peaks = [0.2 * (1.5 if i % 2 else 1.0) for i in range(layers)]
    study = run(fmd.FMDSampler(space, seed=1), 60, _layer_objective(space, peaks))
    states = [state_of(t) for t in study.trials]
    kinds = [s["probe"]["kind"] for s in states]
    assert kinds[0] == "start" and states[0]["hypergradient"] and kinds[1] == "climb"
    first = study.trials[1].params
    assert len({round(first[f"lr_l{i}_peak"], 9) for i in range(layers)}) == 2
    edge = kinds.index("explore")
    assert set(kinds[:edge]) == {"start", "climb", "bracket"}
    assert kinds[edge : edge + 24] == ["explore"] * 24 and kinds[edge + 24] == "pattern"
    assert not any(s["hypergradient"] for s in states[edge:])
    drawn = [
        t.params for t, s in zip(study.trials, states, strict=True) if s["origin"] == "explore"
    ]
    assert all(len({p[f"lr_l{i}_peak"] for i in range(layers)}) > 1 for p in drawn)


@pytest.mark.parametrize("population", [None, 2])
def test_each_hypergradient_check_is_a_json_user_attr_on_the_next_trial(
    population: int | None,
) -> None:
    from optuna_fmd.sampler import CHECK_ATTR

    study = run(fmd.FMDSampler(FAMILY_SPACE, population=population), 40, family_objective())
    checked = [t for t in study.trials if CHECK_ATTR in t.user_attrs]
    assert checked
    for t in checked:
        check = t.user_attrs[CHECK_ATTR]
        assert json.loads(json.dumps(check, allow_nan=False)) == check
        assert check == state_of(t)["check"] and isinstance(check["agrees"], bool)
    # a trial carries a check only right after the probe (or the members) it judges
    assert len(checked) <= len(study.trials) / 2
    kinds = {t.user_attrs[CHECK_ATTR]["kind"] for t in checked}
    assert kinds == ({"probe"} if population is None else {"probe", "members"})


def test_the_search_logs_its_convergence_and_warns_of_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    space = fmd.ScheduleSpace(
        {"lr": fmd.Schedule(windows=1, low=1e-3, high=1.0, log=True, init=0.05)}
    )
    sampler = fmd.FMDSampler(space)
    study = optuna.create_study(sampler=sampler)
    objective = quad_objective(space, {"lr": 0.2})
    with caplog.at_level(logging.INFO, logger="optuna_fmd"), warnings.catch_warnings():
        warnings.simplefilter("error")  # a note that is news, not a warning
        while not sampler.is_converged(study) and len(study.trials) < 200:
            study.optimize(objective, n_trials=1)
    assert sampler.is_converged(study)
    logged = [r for r in caplog.records if r.name == "optuna_fmd.sampler"]
    assert len(logged) == 1 and "search converged" in logged[0].getMessage()

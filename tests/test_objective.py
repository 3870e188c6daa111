"""HypergradientObjective: one training episode per trial, value + hypergradient in user attrs."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch

import optuna_fmd as fmd

optuna.logging.set_verbosity(optuna.logging.WARNING)

TASK = fmd.tasks.Digits(steps=30, batch_size=32)
SPACE = fmd.ScheduleSpace(
    {
        "lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True, init=0.05),
        "momentum": fmd.Schedule(windows=1, low=0.0, high=0.99, init=0.9),
    }
)


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    s = optuna.create_study()
    s.enqueue_trial(SPACE.to_params(SPACE.initial_values()))
    s.optimize(fmd.HypergradientObjective(TASK, SPACE), n_trials=1)
    return s


def test_params_value_and_attrs_match_run_episode(study: optuna.Study) -> None:
    trial = study.trials[0]
    assert list(trial.params) == ["lr_0", "lr_1", "momentum_0"]
    assert trial.distributions["lr_0"] == optuna.distributions.FloatDistribution(
        1e-3, 1.0, log=True
    )
    ref = fmd.run_episode(TASK, SPACE.initial_values(), seed=0)
    assert trial.value == ref.val_loss
    hg = trial.user_attrs["hypergradient"]
    assert ref.hypergradient is not None
    assert hg == {
        "lr_0": ref.hypergradient["lr"][0],
        "lr_1": ref.hypergradient["lr"][1],
        "momentum_0": ref.hypergradient["momentum"][0],
    }
    assert all(type(v) is float and math.isfinite(v) for v in hg.values())
    attrs = trial.user_attrs
    assert attrs["seed"] == 0 and attrs["steps"] == TASK.steps and attrs["diverged"] is False
    assert attrs["engine"] == ref.engine and attrs["val_accuracy"] == ref.val_accuracy
    assert attrs["seconds"] > 0 and math.isfinite(attrs["train_loss"])
    json.dumps(attrs, allow_nan=False)  # plain JSON


def test_without_hypergradient_same_value_no_attr(study: optuna.Study) -> None:
    s = optuna.create_study()
    s.enqueue_trial(SPACE.to_params(SPACE.initial_values()))
    s.optimize(fmd.HypergradientObjective(TASK, SPACE, hypergradient=False), n_trials=1)
    t = s.trials[0]
    assert "hypergradient" not in t.user_attrs
    assert t.user_attrs["engine"] == "none"
    assert t.value == study.trials[0].value


def test_diverged_episode_returns_inf_without_hypergradient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import optuna_fmd.objective as objective_module

    def diverging(task, schedules, **kw):  # type: ignore[no-untyped-def]
        return fmd.EpisodeResult(
            val_loss=float("inf"),
            val_accuracy=0.1,
            hypergradient=None,
            steps=3,
            seconds=0.1,
            seed=kw["seed"],
            train_loss=float("nan"),
            diverged=True,
            engine="forward",
        )

    monkeypatch.setattr(objective_module, "run_episode", diverging)
    s = optuna.create_study()
    s.optimize(fmd.HypergradientObjective(TASK, SPACE), n_trials=1)
    t = s.trials[0]
    assert t.state == optuna.trial.TrialState.COMPLETE  # Optuna accepts inf, not NaN
    assert t.value == float("inf")
    assert t.user_attrs["diverged"] is True and t.user_attrs["train_loss"] is None
    assert "hypergradient" not in t.user_attrs


def test_nonfinite_hypergradient_is_not_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna_fmd.objective as objective_module

    def nan_grad(task, schedules, **kw):  # type: ignore[no-untyped-def]
        return fmd.EpisodeResult(
            val_loss=0.5,
            val_accuracy=0.9,
            hypergradient={"lr": [1.0, float("nan")], "momentum": [0.1]},
            steps=30,
            seconds=0.1,
            seed=0,
            train_loss=0.4,
            diverged=False,
            engine="forward",
        )

    monkeypatch.setattr(objective_module, "run_episode", nan_grad)
    s = optuna.create_study()
    s.optimize(fmd.HypergradientObjective(TASK, SPACE), n_trials=1)
    assert s.trials[0].value == 0.5
    assert "hypergradient" not in s.trials[0].user_attrs


def test_seed_rules() -> None:
    trial = optuna.trial.FixedTrial({}, number=7)
    assert fmd.HypergradientObjective(TASK, SPACE).seed_for(trial) == 0
    assert fmd.HypergradientObjective(TASK, SPACE, seed=3).seed_for(trial) == 3
    assert fmd.HypergradientObjective(TASK, SPACE, seed="trial").seed_for(trial) == 7
    rule = fmd.HypergradientObjective(TASK, SPACE, seed=lambda t: t.number * 2)
    assert rule.seed_for(trial) == 14
    bad = fmd.HypergradientObjective(TASK, SPACE, seed=lambda t: -1)
    with pytest.raises(ValueError, match="non-negative int"):
        bad.seed_for(trial)


def test_works_with_fixed_trial() -> None:
    params = SPACE.to_params(SPACE.initial_values())
    objective = fmd.HypergradientObjective(TASK, SPACE, hypergradient=False)
    value = objective(optuna.trial.FixedTrial(params))
    assert math.isfinite(value)


@pytest.mark.parametrize(
    ("space", "kwargs", "match"),
    [
        (
            fmd.ScheduleSpace({"beta1": fmd.Schedule(windows=1, low=0.0, high=0.99)}),
            {},
            r"`space` schedules 'beta1', which is not a hyperparameter of optimizer='sgd'",
        ),
        (
            fmd.ScheduleSpace({"lr": fmd.Schedule(windows=31, low=1e-3, high=1.0)}),
            {},
            r"`space\['lr'\].windows` must be at most the task's steps=30",
        ),
        (SPACE, {"seed": -1}, "`seed` must be None, a non-negative int"),
        (SPACE, {"seed": "fresh"}, "`seed` must be None, a non-negative int"),
        (SPACE, {"engine": "magic"}, "`engine` must be one of"),
    ],
)
def test_bad_input_fails_before_training(
    space: fmd.ScheduleSpace, kwargs: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        fmd.HypergradientObjective(TASK, space, **kwargs)


def test_type_errors() -> None:
    with pytest.raises(TypeError, match="`task` must be an optuna_fmd Task"):
        fmd.HypergradientObjective("digits", SPACE)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`space` must be a ScheduleSpace"):
        fmd.HypergradientObjective(TASK, {"lr": [0.1]})  # type: ignore[arg-type]


def test_family_hypergradients_are_exact_through_the_objective() -> None:
    """A refined cosine lr and a constant momentum: the objective's hypergradient for each
    family param equals central differences of the validation loss (float64) and the window
    hypergradient chained through the family's Jacobian by hand."""
    from optuna_fmd.space import Constant, Cosine, Refiner

    space = fmd.ScheduleSpace(
        {
            "lr": Refiner(Cosine(1e-3, 1.0, windows=4), 4),
            "momentum": Constant(0.0, 0.99, log=False),
        }
    )
    task = fmd.tasks.Digits(steps=24, batch_size=16, dtype=torch.float64)
    objective = fmd.HypergradientObjective(task, space)
    p = {n: v for n, v in space.initial_params().items()}
    p.update(lr_peak=0.2, lr_warmup=0.3, lr_final=0.2, lr_delta_1=0.3, momentum_value=0.8)

    def value(q: dict[str, float]) -> tuple[float, dict[str, float]]:
        trial = optuna.trial.FixedTrial(q)
        v = objective(trial)
        return v, trial.user_attrs.get("hypergradient", {})

    _, hg = value(p)
    assert set(hg) == set(space.param_names())
    for n in ("lr_peak", "lr_warmup", "lr_final", "lr_delta_1", "lr_delta_3", "momentum_value"):
        h = 1e-6
        hi, lo = dict(p), dict(p)
        hi[n] += h
        lo[n] -= h
        fd = (value(hi)[0] - value(lo)[0]) / (2 * h)
        assert hg[n] == pytest.approx(fd, rel=1e-5, abs=1e-9), n
    windows = fmd.run_episode(task, space.from_params(p), seed=0).hypergradient
    assert windows is not None
    jac = space["lr"].jacobian({k[3:]: v for k, v in p.items() if k.startswith("lr_")})
    by_hand = sum(a * b for a, b in zip(jac["peak"], windows["lr"], strict=True))
    assert hg["lr_peak"] == pytest.approx(by_hand, rel=1e-12)
    assert hg["momentum_value"] == pytest.approx(sum(windows["momentum"]), rel=1e-12)

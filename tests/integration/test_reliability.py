"""Divergence and hand-corrupted storage: the study goes on, proposals stay finite and in bounds,
and nothing already stored is overwritten."""

from __future__ import annotations

import json
import math
import sqlite3
import warnings
from pathlib import Path

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd.sampler import STATE_KEY

from ..test_sampler import SPACE, quad_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)

TASK = fmd.tasks.Digits(steps=60, batch_size=32)
WIDE = fmd.ScheduleSpace({"lr": fmd.Schedule(windows=2, low=1e-3, high=1e30, log=True, init=0.05)})


def test_lr_far_too_high_stops_the_episode_at_once() -> None:
    res = fmd.run_episode(TASK, {"lr": [1e30]})
    assert res.diverged and res.steps < 5
    assert res.val_loss == float("inf") and res.hypergradient is None
    assert math.isnan(res.train_loss)


def test_study_backtracks_from_a_diverged_episode() -> None:
    sampler = fmd.FMDSampler(WIDE, outer=fmd.outer.sign(step_size=0.5, trust_region=1.0))
    study = optuna.create_study(sampler=sampler)
    study.optimize(fmd.HypergradientObjective(TASK, WIDE), n_trials=4)
    t0, t1, t2, t3 = study.trials
    assert math.isfinite(t0.value)  # type: ignore[arg-type]
    # the first outer step jumps lr to ~1e15: training blows up within a few steps
    assert t1.value == float("inf") and t1.user_attrs["diverged"] is True
    assert t1.user_attrs["divergence"] == "training" and t1.user_attrs["steps"] < TASK.steps
    assert "hypergradient" not in t1.user_attrs
    # then back from the best trial with a step half as long, and shorter again
    for t, scale in ((t2, 0.5), (t3, 0.25)):
        state = t.system_attrs[STATE_KEY]
        assert state["origin"] == "backtrack" and state["scale"] == scale
        assert state["base"] == 0
    assert t2.params["lr_0"] < t1.params["lr_0"] and t3.params["lr_0"] < t2.params["lr_0"]
    for t in study.trials:
        assert all(math.isfinite(v) and 1e-3 <= v <= 1e30 for v in t.params.values())


def test_forced_nan_hypergradient_is_recorded_and_backtracked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import optuna_fmd.objective as objective_module

    real = objective_module.run_episode
    calls = {"n": 0}

    def nan_on_second(task, schedules, **kw):  # type: ignore[no-untyped-def]
        res = real(task, schedules, **kw)
        calls["n"] += 1
        if calls["n"] == 2:
            hg = {k: [float("nan")] * len(v) for k, v in res.hypergradient.items()}
            return fmd.EpisodeResult(**{**res.__dict__, "hypergradient": hg})
        return res

    monkeypatch.setattr(objective_module, "run_episode", nan_on_second)
    study = optuna.create_study(sampler=fmd.FMDSampler(WIDE, outer="sign"))
    study.optimize(fmd.HypergradientObjective(TASK, WIDE), n_trials=3)
    bad = study.trials[1]
    assert math.isfinite(bad.value)  # type: ignore[arg-type]  # training itself was fine
    assert bad.user_attrs["diverged"] is True and bad.user_attrs["divergence"] == "hypergradient"
    assert "hypergradient" not in bad.user_attrs
    state = study.trials[2].system_attrs[STATE_KEY]
    assert state["origin"] == "backtrack" and state["scale"] == 0.5


def test_diverging_initial_schedules_end_the_outer_loop_with_a_message() -> None:
    space = fmd.ScheduleSpace(
        {"lr": fmd.Schedule(windows=2, low=1e-3, high=1e30, log=True, init=1e29)}
    )
    sampler = fmd.FMDSampler(space, outer="sign")
    study = optuna.create_study(sampler=sampler)
    with pytest.warns(UserWarning, match="diverged with the initial schedules"):
        study.optimize(fmd.HypergradientObjective(TASK, space), n_trials=2)
    assert sampler.is_converged(study)


@pytest.mark.parametrize(
    "corrupt",
    [
        {"s": ["a", "b"]},
        {"version": 99},
        {"x": [float("nan")] * 4, "iterate": 0, "member": 0, "claim": "final"},
        "not a dict",
    ],
    ids=["steps", "version", "nan-x", "type"],
)
def test_hand_corrupted_sampler_state_is_ignored_and_kept(corrupt: object, tmp_path: Path) -> None:
    study = optuna.create_study(
        sampler=fmd.FMDSampler(SPACE, outer="sign"), storage=f"sqlite:///{tmp_path / 's.db'}"
    )
    study.optimize(quad_objective(), n_trials=2)
    t1 = study.trials[1]
    good = dict(t1.system_attrs[STATE_KEY])
    bad = {**good, **corrupt} if isinstance(corrupt, dict) else corrupt
    _edit_by_hand(tmp_path / "s.db", "trial_system_attributes", t1._trial_id, STATE_KEY, bad)
    study = optuna.load_study(
        study_name=study.study_name,
        storage=f"sqlite:///{tmp_path / 's.db'}",
        sampler=fmd.FMDSampler(SPACE, outer="sign"),
    )
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        study.optimize(quad_objective(), n_trials=2)
    assert json.dumps(study.trials[1].system_attrs[STATE_KEY]) == json.dumps(bad)  # kept
    for t in study.trials:
        for name, v in t.params.items():
            s = SPACE[name.rsplit("_", 1)[0]]
            assert math.isfinite(v) and s.low <= v <= s.high
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("population", [None, 2])
def test_corrupt_hypergradient_attr_in_storage_does_not_stop_the_study(
    population: int | None, tmp_path: Path
) -> None:
    study = optuna.create_study(
        sampler=fmd.FMDSampler(SPACE, outer="sign", population=population),
        storage=f"sqlite:///{tmp_path / 's.db'}",
    )
    study.optimize(quad_objective(), n_trials=2)
    t = study.trials[1]
    _edit_by_hand(
        tmp_path / "s.db", "trial_user_attributes", t._trial_id, "hypergradient", {"lr_0": "1e3"}
    )
    study = optuna.load_study(
        study_name=study.study_name,
        storage=f"sqlite:///{tmp_path / 's.db'}",
        sampler=fmd.FMDSampler(SPACE, outer="sign", population=population),
    )
    with pytest.warns(UserWarning, match="hypergradient attribute"):
        study.optimize(quad_objective(), n_trials=3)
    assert study.trials[1].user_attrs["hypergradient"] == {"lr_0": "1e3"}
    assert len(study.trials) == 5


def _edit_by_hand(db: Path, table: str, trial_id: int, key: str, value: object) -> None:
    """Rewrite one attribute in the SQLite file directly, as a person with a SQL shell would."""
    with sqlite3.connect(db) as con:
        cur = con.execute(
            f"UPDATE {table} SET value_json = ? WHERE trial_id = ? AND key = ?",
            (json.dumps(value), trial_id, key),
        )
        assert cur.rowcount == 1

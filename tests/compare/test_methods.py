"""The compared methods: one start for all, family maps, Hyperband's intermediate reports."""

from __future__ import annotations

import math

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd import baselines, compare, objective
from optuna_fmd.compare import _methods, _objectives
from optuna_fmd.episode import EpisodeResult
from optuna_fmd.space import default_space


@pytest.fixture
def task():  # type: ignore[no-untyped-def]
    return compare.TASKS["digits-sgd"].make_task()


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, list[float]]]:
    """The schedules each objective trains, without training."""
    got: list[dict[str, list[float]]] = []

    def fake(task, schedules, **kwargs):  # type: ignore[no-untyped-def]
        got.append({k: list(v) for k, v in schedules.items()})
        return EpisodeResult(0.5, 0.9, None, task.steps, 0.0, 0, 0.5, False, "none")

    monkeypatch.setattr(_objectives, "run_episode", fake)
    monkeypatch.setattr(objective, "run_episode", fake)
    return got


def _close(a: dict[str, list[float]], b: dict[str, list[float]]) -> bool:
    return a.keys() == b.keys() and all(a[k] == pytest.approx(b[k]) for k in a)


def _open(method: str, task, grid=(0.5, 1.0, 2.0)):  # type: ignore[no-untyped-def]
    space = default_space("sgd", windows=4)
    st = _methods.open_study(
        compare.METHODS[method],
        task,
        space,
        seed=0,
        grid=grid,
        storage=optuna.storages.InMemoryStorage(),
        name=method,
    )
    return st, space


@pytest.mark.parametrize("method", ["tpe", "cmaes", "random", "tpe-const", "tpe-cosine"])
def test_every_method_that_takes_a_start_gets_the_same_one(task, seen, method: str) -> None:  # type: ignore[no-untyped-def]
    st, space = _open(method, task)
    trial = st.study.ask()  # the queued first trial
    st.objective(trial)
    schedules = seen[0]
    assert _close(st.schedule_of(trial.params), schedules)
    init = space.initial_values()
    if method == "tpe-cosine":  # the family's member with the same peak, momentum and decay
        assert schedules["lr"] == pytest.approx(baselines.cosine(init["lr"][0], 4))
        assert schedules["momentum"] == init["momentum"]
        assert schedules["weight_decay"] == init["weight_decay"]
    else:
        assert _close(schedules, init)


@pytest.mark.parametrize("method", ["fmd", "fmd-cosine", "fmd-pop2"])
def test_fmd_starts_at_the_same_point(task, seen, method: str) -> None:  # type: ignore[no-untyped-def]
    """FMD's family spaces start where the cosine family does (the cosine with the start's
    peak, momentum and decay, held constant); the window-space FMD at the window start."""
    st, space = _open(method, task)
    trial = st.study.ask()
    st.objective(trial)
    init = space.initial_values()
    assert seen[0]["lr"] == pytest.approx(baselines.cosine(init["lr"][0], 4))
    for h in ("momentum", "weight_decay"):
        assert set(seen[0][h]) == set(init[h])  # one window: the same constant
    assert _close(st.schedule_of(trial.params), seen[0])
    refined = any("delta" in n for n in trial.params)
    assert refined == (method != "fmd-cosine")
    assert st.study.sampler._population == (2 if method == "fmd-pop2" else None)
    for k, windows in enumerate(("fmd-windows", "fmd-windows-search", "pattern-windows")):
        st, space = _open(windows, task)
        st.objective(st.study.ask())
        assert _close(seen[1 + k], space.initial_values())


def test_the_grid_runs_each_peak_once_then_is_exhausted(task, seen) -> None:  # type: ignore[no-untyped-def]
    st, space = _open("cosine-grid", task, grid=(0.5, 1.0, 0.5, 2.0))
    peaks = []
    while not st.exhausted():
        trial = st.study.ask()
        st.study.tell(trial, st.objective(trial))
        peaks.append(trial.params["peak_lr"])
    assert [s["lr"] for s in seen] == [baselines.cosine(p, 4) for p in peaks]
    assert peaks == pytest.approx([0.025, 0.05, 0.1])  # factors x 0.05, repeated ones once
    assert st.schedule_of({"peak_lr": 0.1})["momentum"] == space.initial_values()["momentum"]


def test_families_map_their_parameters_to_window_schedules() -> None:
    space = default_space("adamw", windows=4)
    params, to_schedules = _methods._family(space, "cosine")
    assert list(params) == ["peak_lr", "warmup", "beta1", "weight_decay"]
    got = to_schedules({"peak_lr": 0.01, "warmup": 0.25, "beta1": 0.8, "weight_decay": 0.1})
    assert got["lr"] == pytest.approx(baselines.cosine(0.01, 4, warmup=0.25))
    assert got["beta1"] == [0.8] * 4 and got["weight_decay"] == [0.1] * 4
    params, to_schedules = _methods._family(space, "constant")
    assert list(params) == ["lr", "beta1", "weight_decay"]
    assert to_schedules({"lr": 1e-3, "beta1": 0.9, "weight_decay": 0.0})["lr"] == [1e-3] * 4


def test_hyperband_objective_reports_intermediate_losses_and_prunes() -> None:
    task = fmd.tasks.Digits(steps=100, batch_size=32)  # 100 = 9 x 11 + 1: no tenth report
    st, _ = _open("tpe-hyperband", task)
    for _ in range(12):
        trial = st.study.ask()
        try:
            st.study.tell(trial, st.objective(trial))
        except optuna.TrialPruned:
            st.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    trials = st.study.get_trials(deepcopy=False)
    every = task.steps // _methods.RUNGS
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(sorted(t.intermediate_values) == list(range(1, _methods.RUNGS)) for t in done)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "Hyperband pruned nothing in 12 trials"
    for t in pruned:  # stopped at its last report: it cost only what ran
        assert t.user_attrs["steps"] == every * max(t.intermediate_values)
        assert t.user_attrs["steps"] < task.steps
    assert all(math.isfinite(t.value) for t in done)

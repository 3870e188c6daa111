"""The deep task of protocol v4: a per-layer space searched by FMD and the samplers over many
params, the global cosine family by TPE, every method from the same start."""

from __future__ import annotations

import math

import optuna
import pytest

from optuna_fmd import baselines, compare, objective
from optuna_fmd.compare import _methods, _objectives, _retrain, _unit
from optuna_fmd.compare._config import CompareConfig, preset
from optuna_fmd.episode import EpisodeResult


@pytest.fixture(scope="module")
def spec():  # type: ignore[no-untyped-def]
    return compare.TASKS["digits-deep"]


def test_the_deep_task_searches_a_cosine_per_layer_and_two_constants(spec) -> None:  # type: ignore[no-untyped-def]
    space = spec.make_space()
    layers = [n for n in space if n.startswith("lr_")]
    assert len(layers) == 4  # three hidden layers and the output layer
    assert space.n_params == 3 * len(layers) + 2
    assert set(spec.groups()) == set(layers)
    assert spec.window_space().param_names()[0] == "lr_0"
    deep = compare.TASKS["fashion-deep"]
    assert deep.model == "mlp-128-128-128-128-128-128" and deep.steps == 600 and deep.layers


@pytest.mark.parametrize("method", ["fmd", "pattern", "tpe", "cmaes", "random", "tpe-cosine"])
def test_every_method_on_the_deep_task_starts_at_the_same_schedule(
    spec, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    seen = []

    def fake(task, schedules, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(({k: list(v) for k, v in schedules.items()}, kwargs.get("groups")))
        return EpisodeResult(0.5, 0.9, None, task.steps, 0.0, 0, 0.5, False, "none")

    monkeypatch.setattr(_objectives, "run_episode", fake)
    monkeypatch.setattr(objective, "run_episode", fake)
    task = spec.make_task()
    st = _methods.open_study(
        compare.METHODS[method],
        task,
        spec.make_space(task=task),
        seed=0,
        grid=(1.0,),
        storage=optuna.storages.InMemoryStorage(),
        name=method,
        window_space=spec.window_space(),
    )
    trial = st.study.ask()
    st.objective(trial)
    schedule, groups = seen[0]
    assert _close(st.schedule_of(trial.params), schedule)
    assert (groups is None) == (method == "tpe-cosine")
    cosine = baselines.cosine(0.05, spec.windows)
    lrs = [v for n, v in schedule.items() if n.startswith("lr")]
    assert lrs and all(v == pytest.approx(cosine) for v in lrs)
    assert schedule["momentum"][0] == pytest.approx(0.9)
    assert schedule["weight_decay"][0] == pytest.approx(5e-4)
    assert (len(lrs) == 1) == (method == "tpe-cosine")


def _close(a: dict[str, list[float]], b: dict[str, list[float]]) -> bool:
    return a.keys() == b.keys() and all(a[k] == pytest.approx(b[k]) for k in a)


def test_fresh_seed_figures_train_a_per_layer_schedule_with_its_groups(spec) -> None:  # type: ignore[no-untyped-def]
    """A schedule that starves the first layer (peak 1e-3) is scored as such on fresh seeds:
    without its groups it could not be trained at all."""
    task = spec.make_task()
    space = spec.make_space(task=task)
    starved = space.from_params(space.initial_params() | {"lr_l0_peak": 1e-3})
    both = [
        _retrain.fresh_seed_figures(task, s, (5,), spec.groups(task))
        for s in (space.from_params(space.initial_params()), starved)
    ]
    assert all(math.isfinite(b["fresh_val"]) for b in both)
    assert both[0]["fresh_val"] != both[1]["fresh_val"]
    assert both[0]["test_accuracy"] != both[1]["test_accuracy"]


@pytest.mark.slow
def test_a_quick_deep_unit_runs_every_method_and_scores_per_layer_schedules(spec) -> None:  # type: ignore[no-untyped-def]
    cfg = CompareConfig(**{**preset("quick-deep"), "budgets": {"short": 2.0, "long": 4.0}})
    cfg.validate()
    unit = _unit.run_unit(cfg, "digits-deep", 0)
    _retrain.retrain_unit(cfg, unit)
    for m in cfg.methods:
        best = unit["methods"][m]["best"]["long"]
        assert best is not None and math.isfinite(best["fresh_val"])
        assert any(n.startswith("lr_l") for n in best["schedule"]) == (m != "tpe-cosine")


def test_the_report_says_which_methods_search_the_per_layer_space() -> None:
    from optuna_fmd.compare._methods import describe_space

    assert describe_space(compare.METHODS["tpe"], True).startswith("per layer")
    assert "pattern steps only" in describe_space(compare.METHODS["pattern"], True)
    assert (
        describe_space(compare.METHODS["tpe-cosine"], True) == compare.METHODS["tpe-cosine"].space
    )
    assert describe_space(compare.METHODS["tpe"], False) == "30-dim windows"

"""The imbalanced task (protocol v5): a per-class space searched by FMD and the samplers over
many params, deferred re-weighting and inverse-frequency weights by TPE, plain cross-entropy
by TPE over the cosine family; every method from its common start."""

from __future__ import annotations

import math

import optuna
import pytest

from optuna_fmd import compare, objective
from optuna_fmd.compare import _methods, _objectives, _retrain, _unit
from optuna_fmd.compare._config import CompareConfig, preset
from optuna_fmd.compare._methods import describe_space
from optuna_fmd.episode import EpisodeResult
from optuna_fmd.space import effective_number_weights, inverse_frequency_weights


@pytest.fixture(scope="module")
def spec():  # type: ignore[no-untyped-def]
    return compare.TASKS["digits-lt"]


def test_the_imbalanced_task_searches_a_deferred_weight_per_class(spec) -> None:  # type: ignore[no-untyped-def]
    task = spec.make_task()
    assert task.imbalance == 10.0
    space = spec.make_space(task=task)
    classes = [n for n in space if n.startswith("cw_")]
    assert len(classes) == 10
    assert spec.groups(task)["cw_3"] == ("class_weight", ("3",))
    assert "cw_3" not in spec.window_space()
    lt = compare.TASKS["fashion-lt"]
    assert (lt.imbalance, lt.model, lt.steps, lt.dataset) == (100.0, "mlp", 800, "fashion-mnist")
    assert set(preset("v5-lt")["methods"]) == {
        "fmd",
        "pattern",
        "tpe",
        "cmaes",
        "random",
        "tpe-drw",
        "tpe-cosine",
        "inverse-frequency",
    }


@pytest.mark.parametrize(
    "method",
    ["fmd", "pattern", "tpe", "cmaes", "random", "tpe-drw", "tpe-cosine", "inverse-frequency"],
)
def test_every_method_starts_where_it_should_and_trains_with_its_class_groups(
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
    assert st.schedule_of(trial.params).keys() == schedule.keys()
    weighted = [n for n in schedule if n.startswith("cw_")]
    if method == "tpe-cosine":  # plain cross-entropy
        assert not weighted and groups is None
        return
    assert len(weighted) == 10 and set(groups) == set(weighted)
    assert groups["cw_9"] == ("class_weight", ("9",))
    counts = task.class_counts(0)
    if method == "inverse-frequency":  # the weights, fixed over the run
        shape = inverse_frequency_weights(counts)
        assert [schedule[f"cw_{c}"] for c in range(10)] == [pytest.approx([w]) for w in shape]
    else:  # the common start: deferred re-weighting towards effective-number weights
        shape = effective_number_weights(counts)
        late = [schedule[f"cw_{c}"][-1] for c in range(10)]
        early = [schedule[f"cw_{c}"][0] for c in range(10)]
        assert late == pytest.approx(shape, rel=0.05)
        assert early == pytest.approx([1.0] * 10, abs=0.05)


def test_deferred_reweighting_moves_every_class_with_one_switch_and_strength(spec) -> None:  # type: ignore[no-untyped-def]
    task = spec.make_task()
    params, schedule_of = _methods._family(spec.window_space(), "drw", task.class_counts(0))
    assert set(params) == {"peak_lr", "switch", "strength"}
    off = schedule_of({"peak_lr": 0.05, "switch": 0.5, "strength": 0.0})
    assert all(v == pytest.approx(1.0) for c in range(10) for v in off[f"cw_{c}"])
    early = schedule_of({"peak_lr": 0.05, "switch": 0.1, "strength": 1.0})
    late = schedule_of({"peak_lr": 0.05, "switch": 0.9, "strength": 1.0})
    for c in (0, 9):  # the head's weight falls below 1, the tail's rises above, both at once
        assert (early[f"cw_{c}"][3] - 1) * (late[f"cw_{c}"][3] - 1) >= 0
        assert abs(early[f"cw_{c}"][3] - 1) > 10 * abs(late[f"cw_{c}"][3] - 1)


def test_the_report_says_which_methods_search_the_per_class_space() -> None:
    assert describe_space(compare.METHODS["tpe"], False, True).startswith("per class")
    assert "pattern steps only" in describe_space(compare.METHODS["pattern"], False, True)
    drw = compare.METHODS["tpe-drw"]
    assert describe_space(drw, False, True) == drw.space


def test_fresh_seed_figures_score_a_class_weight_schedule_with_its_groups(spec) -> None:  # type: ignore[no-untyped-def]
    """Starving the tail classes (weight 0.05 after the switch) shows on fresh seeds."""
    task = spec.make_task()
    space = spec.make_space(task=task)
    start = space.initial_params()
    starved = start | {f"cw_{c}_strength": 0.0 for c in range(10)}
    figures = [
        _retrain.fresh_seed_figures(task, space.from_params(p), (5,), spec.groups(task))
        for p in (start, starved)
    ]
    assert all(math.isfinite(f["fresh_val"]) for f in figures)
    assert figures[0]["fresh_val"] != figures[1]["fresh_val"]


@pytest.mark.slow
def test_a_quick_lt_unit_runs_every_method_and_scores_per_class_schedules(spec) -> None:  # type: ignore[no-untyped-def]
    cfg = CompareConfig(**{**preset("quick-lt"), "budgets": {"short": 2.0, "long": 4.0}})
    cfg.validate()
    unit = _unit.run_unit(cfg, "digits-lt", 0)
    _retrain.retrain_unit(cfg, unit)
    for m in cfg.methods:
        best = unit["methods"][m]["best"]["long"]
        assert best is not None and math.isfinite(best["fresh_val"])
        assert any(n.startswith("cw_") for n in best["schedule"])

"""The schedule-free task: the 6 x 128 MLP with schedule-free AdamW from the package's defaults,
its per-layer space, and the anchors users run instead of tuning, scored like every method."""

from __future__ import annotations

import math

import optuna
import pytest

from optuna_fmd import compare, objective
from optuna_fmd.compare import _anchors, _methods, _objectives
from optuna_fmd.compare._config import DEEP_MLP
from optuna_fmd.episode import EpisodeResult
from optuna_fmd.tasks import Digits

DEFAULTS = {"beta1": 0.9, "weight_decay": 0.0}


@pytest.fixture(scope="module")
def spec():  # type: ignore[no-untyped-def]
    return compare.TASKS["digits-deep-sf"]


def test_the_task_is_the_deep_mlp_with_schedule_free_adamw_from_its_defaults(spec) -> None:  # type: ignore[no-untyped-def]
    deep = compare.TASKS["fashion-deep-sf"]
    assert (deep.model, deep.optimizer, deep.steps, deep.batch_size) == (
        DEEP_MLP,
        "sf-adamw",
        600,
        128,
    )
    assert deep.layers and dict(deep.hypers) == {"warmup": 30.0}
    assert deep.window_space().initial_values()["warmup"] == [30.0] * deep.windows
    task = spec.make_task()
    assert task.optimizer == "sf-adamw" and task.fixed_hypers()["warmup"] == 10.0
    space = spec.make_space(task=task)
    layers = [n for n in space if n.startswith("lr_")]
    assert len(layers) == 4 and space.n_params == 2 * len(layers) + 2
    start = space.initial_params()
    assert all(start[f"{n}_value"] == 0.0025 for n in layers)
    assert all(start[f"warmup_{n[3:]}_value"] == 10.0 for n in layers)
    assert start["beta1_value"] == 0.9 and start["weight_decay_value"] == 0.0
    assert set(spec.groups(task)) == {*layers, *(f"warmup_{n[3:]}" for n in layers)}


def _fake_episodes(monkeypatch: pytest.MonkeyPatch, diverge: bool = False) -> list:  # type: ignore[type-arg]
    seen: list = []  # type: ignore[type-arg]

    def fake(task, schedules, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(({k: list(v) for k, v in schedules.items()}, kwargs.get("groups")))
        bad = diverge and len(seen) == 2
        loss = math.nan if bad else 0.5
        return EpisodeResult(loss, 0.9, None, task.steps, 0.0, 0, loss, bad, "none")

    monkeypatch.setattr(_objectives, "run_episode", fake)
    monkeypatch.setattr(objective, "run_episode", fake)
    return seen


def _open(spec, method: str):  # type: ignore[no-untyped-def]
    task = spec.make_task()
    return _methods.open_study(
        compare.METHODS[method],
        task,
        spec.make_space(task=task),
        seed=0,
        grid=(1.0,),
        storage=optuna.storages.InMemoryStorage(),
        name=method,
        window_space=spec.window_space(),
    )


@pytest.mark.parametrize("method", ["fmd", "pattern", "tpe", "cmaes", "random"])
def test_every_searcher_starts_at_the_package_defaults(
    spec, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    seen = _fake_episodes(monkeypatch)
    st = _open(spec, method)
    trial = st.study.ask()
    st.objective(trial)
    schedule, groups = seen[0]
    assert groups is not None and set(groups) <= set(schedule)
    assert all(v == [0.0025] for n, v in schedule.items() if n.startswith("lr_"))
    assert all(v == [10.0] for n, v in schedule.items() if n.startswith("warmup_"))
    assert {h: schedule[h][0] for h in DEFAULTS} == DEFAULTS
    assert "schedule-free" in st.study.user_attrs["space"]


def test_the_anchors_queue_their_lrs_and_count_a_diverged_run(
    spec, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    seen = _fake_episodes(monkeypatch, diverge=True)
    st = _open(spec, "sf-adamw-grid")
    values = []
    while not st.exhausted():
        trial = st.study.ask()
        value = st.objective(trial)
        st.study.tell(trial, value)
        values.append((trial.params["lr"], value, trial.user_attrs["diverged"]))
    assert [v[0] for v in values] == pytest.approx([0.0025 * f for f in (0.25, 0.5, 1, 2, 4)])
    assert [v[2] for v in values] == [False, True, False, False, False]
    assert values[1][1] == math.inf  # counted as diverged, not dropped
    assert [s for s, _ in seen] == [{"lr": [v[0]]} for v in values]
    assert all(g is None for _, g in seen)
    one = _open(spec, "sf-adamw")
    assert one.max_trials == 1
    assert one.schedule_of({"lr": 0.0025}) == {"lr": [0.0025]}


@pytest.mark.parametrize(
    ("method", "optimizer", "lr"),
    [("sf-sgd-grid", "sf-sgd", 1.0), ("adamw-cosine-grid", "adamw", 0.0025)],
)
def test_an_anchor_trains_with_its_own_optimiser_on_any_task(
    spec, method: str, optimizer: str, lr: float, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The task's data, model and horizon; the anchor's optimiser, keeping the task's fixed
    values of the hypers it has (the schedule-free warm-up), and its own lr grid."""
    trained: list = []  # type: ignore[type-arg]

    def fake(task, schedules, **kwargs):  # type: ignore[no-untyped-def]
        trained.append((task, {k: list(v) for k, v in schedules.items()}))
        return EpisodeResult(0.5, 0.9, None, task.steps, 0.0, 0, 0.5, False, "none")

    monkeypatch.setattr(_objectives, "run_episode", fake)
    st = _open(spec, method)
    assert st.optimizer == optimizer
    while not st.exhausted():
        trial = st.study.ask()
        st.study.tell(trial, st.objective(trial))
    task = spec.make_task()
    assert len(trained) == 5
    for (t, schedule), factor in zip(trained, (0.25, 0.5, 1.0, 2.0, 4.0), strict=True):
        assert t.optimizer == optimizer and (t.steps, t.model) == (task.steps, task.model)
        lr_values = schedule["lr"]
        assert max(lr_values) <= lr * factor * (1 + 1e-12)
        if optimizer == "adamw":  # a 5% warm-up, then the cosine to 0, a value per step
            assert len(lr_values) == task.steps and "warmup" not in t.hypers
            peak = lr_values.index(max(lr_values))
            assert peak == int(0.05 * task.steps) and max(lr_values) > 0.99 * lr * factor
            assert lr_values[:peak] == sorted(lr_values[:peak]) and lr_values[-1] < 1e-3 * lr
        else:
            assert lr_values == pytest.approx([lr * factor])
            assert t.fixed_hypers()["warmup"] == 10.0 and t.fixed_hypers()["momentum"] == 0.9


def test_an_anchor_task_shares_the_data_and_leaves_its_own_optimiser_alone() -> None:
    task = compare.TASKS["digits-deep-sf"].make_task()
    assert _anchors.anchor_task(task, None) is task
    assert _anchors.anchor_task(task, "sf-adamw") is task
    data = task.data()
    sgd = _anchors.anchor_task(task, "sgd")
    assert sgd.optimizer == "sgd" and sgd.data() is data and dict(sgd.hypers) == {}
    assert task.optimizer == "sf-adamw"  # the task itself is unchanged


def test_an_anchor_runs_the_engines_plain_episode() -> None:
    """A real, short episode: the anchor's value is the task's validation loss at ``x``."""
    task = Digits(model="mlp-32-32-32", optimizer="sf-adamw", steps=30, batch_size=64)
    st = _methods.open_study(
        compare.METHODS["sf-adamw"],
        task,
        compare.TASKS["digits-deep-sf"].make_space(task=task),
        seed=0,
        grid=(1.0,),
        storage=optuna.storages.InMemoryStorage(),
        name="sf",
    )
    trial = st.study.ask()
    value = st.objective(trial)
    assert math.isfinite(value) and value < math.log(10)

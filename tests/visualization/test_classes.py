"""``plot_class_weights``: class-weight schedules (best against start) and per-class accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import create_trial

import optuna_fmd as fmd
from optuna_fmd.space import Schedule, ScheduleSpace, imbalanced_space
from optuna_fmd.visualization import plot_class_weights, plot_schedules, write_report
from optuna_fmd.visualization._classes import _get_class_weight_info
from optuna_fmd.visualization._dashboard import CLASS_WEIGHTS_FIGURE, refresh_figures
from optuna_fmd.visualization.matplotlib._classes import _class_weights_axes

from ._studies import mixed_study


@pytest.fixture(scope="module")
def imbalanced() -> tuple[optuna.Study, list[int]]:
    """examples/imbalanced.py's recipe, tiny: 4 trials of 30-step Digits-LT, 2 windows."""
    task = fmd.tasks.Digits(model="mlp", steps=30, batch_size=32, imbalance=10.0)
    counts = task.class_counts(0)
    space = imbalanced_space(counts, windows=2)
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(), sampler=fmd.FMDSampler(space, seed=0)
    )
    study.optimize(fmd.HypergradientObjective(task, space), n_trials=4)
    return study, counts


def test_the_objective_keeps_an_imbalanced_tasks_class_counts_on_the_study(
    imbalanced: tuple[optuna.Study, list[int]],
) -> None:
    study, counts = imbalanced
    assert study.user_attrs["class_counts"] == counts == [130, 100, 77, 60, 46, 36, 28, 21, 16, 13]


def _added(space: ScheduleSpace, rows: list[tuple[float, dict[str, float], Any]]) -> optuna.Study:
    """A study of added trials ``(value, params, val_class_accuracy)`` over ``space``."""
    dists: dict[str, BaseDistribution] = {
        n: FloatDistribution(lo, hi, log=log) for n, (lo, hi, log) in space.distributions().items()
    }
    study = optuna.create_study()
    for value, params, accuracy in rows:
        attrs = {"steps": 40} | ({} if accuracy is None else {"val_class_accuracy": accuracy})
        study.add_trial(
            create_trial(params=params, distributions=dists, value=value, user_attrs=attrs)
        )
    return study


SPACE = imbalanced_space([10, 90, 30], windows=4)  # class 1 is the head, class 0 the tail


def _moved(**changes: float) -> dict[str, float]:
    return SPACE.initial_params() | changes


def test_info_orders_classes_head_first_and_reads_best_and_start() -> None:
    best = _moved(cw_0_switch=0.3, cw_0_strength=1.5, cw_2_switch=0.8)
    study = _added(
        SPACE,
        [(1.0, SPACE.initial_params(), [0.1, 0.9, 0.5]), (0.5, best, [0.6, 0.8, 0.7])],
    )
    info = _get_class_weight_info(study, SPACE)  # no counts: entry order, no sizes
    assert info.entries == ["cw_0", "cw_1", "cw_2"] and info.labels[0] == "class 0"
    assert not info.by_count and info.classes == [0, 1, 2]
    study.set_user_attr("class_counts", [10, 90, 30])
    info = _get_class_weight_info(study, SPACE)
    assert info.entries == ["cw_1", "cw_2", "cw_0"]
    assert info.labels == [
        "class 1 (90 examples)",
        "class 2 (30 examples)",
        "class 0 (10 examples)",
    ]
    assert info.by_count and info.classes == [1, 2, 0] and info.steps == 40
    assert info.best is not None and info.best.number == 1 and info.best_label == "best (trial 1)"
    assert info.start is not None and info.start.number == 0
    assert info.start_label == "start (trial 0)"
    assert info.best.schedules["cw_0"] == SPACE.from_params(best)["cw_0"]
    assert info.best_accuracy == [0.8, 0.7, 0.6] and info.start_accuracy == [0.9, 0.5, 0.1]
    assert info.note == "" and info.accuracy_note == ""


def test_best_trial_is_the_start_and_accuracy_not_recorded() -> None:
    study = _added(SPACE, [(1.0, SPACE.initial_params(), None)])
    info = _get_class_weight_info(study, SPACE)
    assert info.start is None and info.best_label == "best (trial 0, the start)"
    assert info.best_accuracy is None and info.accuracy_note == "per-class accuracy not recorded"
    fig = plot_class_weights(study, space=SPACE)
    assert [t.type for t in fig.data] == ["scatter"] * 3  # the best only, no bars
    assert "per-class accuracy not recorded" in [a.text for a in fig.layout.annotations]
    axes = _class_weights_axes(study, pyplot=False, space=SPACE)
    assert "per-class accuracy not recorded" in [t.get_text() for t in axes[1].texts]


def test_figure_has_a_trace_per_class_with_the_best_values_and_the_stored_accuracy(
    imbalanced: tuple[optuna.Study, list[int]],
) -> None:
    study, counts = imbalanced
    best = study.best_trial
    first = study.trials[0]
    for t in study.trials:  # the objective stores a list, one accuracy per class
        acc = t.user_attrs["val_class_accuracy"]
        assert isinstance(acc, list) and len(acc) == 10 and all(0 <= a <= 1 for a in acc)
    fig = plot_class_weights(study)
    lines = [t for t in fig.data if t.type == "scatter" and t.showlegend]
    assert [t.name for t in lines] == [f"class {c} ({counts[c]} examples)" for c in range(10)]
    assert all(t.xaxis == "x" for t in lines)
    for c, line in enumerate(lines):
        windows = best.user_attrs["schedules"][f"cw_{c}"]
        assert list(line.y) == [v for v in windows for _ in (0, 1)]
        assert list(line.x) == [0.0, 15.0, 15.0, 30.0]
    starts = [t for t in fig.data if t.type == "scatter" and not t.showlegend]
    assert len(starts) == 10 and all(t.line.dash == "dash" for t in starts)
    assert list(starts[9].y) == [v for v in first.user_attrs["schedules"]["cw_9"] for _ in (0, 1)]
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert set(bars) == {f"best (trial {best.number})", "start (trial 0)"}
    assert list(bars["start (trial 0)"].x) == [str(c) for c in range(10)]
    assert list(bars[f"best (trial {best.number})"].y) == best.user_attrs["val_class_accuracy"]
    assert list(bars["start (trial 0)"].y) == first.user_attrs["val_class_accuracy"]
    # the static twin draws the same
    left, right = _class_weights_axes(study, pyplot=False)
    assert [t.get_text() for t in left.get_legend().get_texts()] == [t.name for t in lines]
    heights = [p.get_height() for p in right.patches]
    np.testing.assert_allclose(
        heights, first.user_attrs["val_class_accuracy"] + best.user_attrs["val_class_accuracy"]
    )


def test_a_study_without_class_weights_gets_a_note() -> None:
    fig = plot_class_weights(mixed_study())
    assert [a.text for a in fig.layout.annotations] == [
        "no class-weight schedule found: the study's space is not at hand (pass space=)"
    ]
    space = ScheduleSpace(
        {"lr": Schedule(2, 1e-3, 1.0, log=True), "momentum": Schedule(1, 0.0, 0.99)}
    )
    fig = plot_class_weights(mixed_study(), space=space)
    assert [a.text for a in fig.layout.annotations] == [
        "no class-weight schedule in this study's space"
    ]
    assert len(fig.data) == 0
    (ax,) = _class_weights_axes(mixed_study(), pyplot=False, space=space)
    assert [t.get_text() for t in ax.texts] == ["no class-weight schedule in this study's space"]


def test_schedules_draw_the_class_weights_in_one_row(
    imbalanced: tuple[optuna.Study, list[int]],
) -> None:
    study, _ = imbalanced
    fig = plot_schedules(study)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["lr", "momentum", "weight_decay", "class_weight (per class)"]
    # every class of every trial, the best once more (dashed, on top) when it is the latest
    groups = {t.legendgroup for t in fig.data}
    twice = sum(g.endswith("/best") and g.replace("/best", "/latest") in groups for g in groups)
    row = [t for t in fig.data if t.yaxis == "y4"]
    assert len(row) == 10 * (len(study.trials) + twice)
    # one legend item for the latest, one for the best, one for all the others
    assert sum(t.showlegend for t in fig.data) == len(groups)


def test_report_has_the_class_weights_section_only_with_class_weights(
    imbalanced: tuple[optuna.Study, list[int]], tmp_path: Path
) -> None:
    study, _ = imbalanced
    html = write_report(study, tmp_path / "lt").read_text()
    assert 'id="class-weights"' in html and 'id="fig-class-weights"' in html
    assert (tmp_path / "lt" / "class-weights.png").read_bytes()[:4] == b"\x89PNG"
    assert html.count("<noscript><img") == 4
    plain = write_report(mixed_study(), tmp_path / "plain").read_text()
    assert "class-weights" not in plain and not (tmp_path / "plain" / "class-weights.png").exists()


def test_dashboard_saves_the_class_weights_figure_only_with_class_weights(
    imbalanced: tuple[optuna.Study, list[int]],
) -> None:
    def saved(study: optuna.Study) -> bool:
        attrs = study._storage.get_study_system_attrs(study._study_id)
        return any(k.startswith(f"dashboard:plot_data:{CLASS_WEIGHTS_FIGURE}:") for k in attrs)

    study, _ = imbalanced
    refresh_figures(study)
    assert saved(study)
    plain = mixed_study()
    refresh_figures(plain)
    assert not saved(plain)

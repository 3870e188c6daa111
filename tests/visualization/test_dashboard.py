"""optuna-dashboard integration: schedule artifacts per trial, live figures, no failed trial."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

import optuna_fmd as fmd
from optuna_fmd.visualization import DashboardCallback, save_best_note
from optuna_fmd.visualization._dashboard import (
    HYPERGRADIENTS_FIGURE,
    SCHEDULES_FIGURE,
    _trial_schedule_info,
    dashboard_figures,
)
from optuna_fmd.visualization._layout import DASHBOARD_HEIGHT
from optuna_fmd.visualization._schedules import _get_schedule_info

from ._figures import check_panels, legend_entries, legend_px, plot_px, y_axes
from ._studies import DIST, crowded_study, mixed_study


def test_trial_schedule_info_adds_the_running_trial_as_latest() -> None:
    info = _get_schedule_info(mixed_study())
    params = {"lr_0": 0.2, "lr_1": 0.05, "momentum_0": 0.85}
    got = _trial_schedule_info(info, 5, params, DIST, 0.4)
    assert got is not None
    assert [t.number for t in got.trials] == [0, 1, 3, 4, 5] and got.latest == 5
    assert got.trials[-1].schedules == {"lr": [0.2, 0.05], "momentum": [0.85]}
    assert got.best == 5 and got.log == {"lr": True, "momentum": False} and got.steps == 100
    # a failed (no value) or diverged trial is drawn but is never the best
    assert _trial_schedule_info(info, 5, params, DIST, None).best == 1  # type: ignore[union-attr]
    diverged = _trial_schedule_info(info, 5, params, DIST, math.inf)
    assert diverged is not None and diverged.best == 1 and diverged.trials[-1].value is None
    # an earlier trial's image leaves the later ones out
    early = _trial_schedule_info(info, 2, params, DIST, 1.0)
    assert early is not None and [t.number for t in early.trials] == [0, 1, 2]


def test_trial_schedule_info_single_trial_and_no_schedule() -> None:
    empty = _get_schedule_info(optuna.create_study())
    got = _trial_schedule_info(empty, 0, {"lr_0": 0.1, "lr_1": 0.1}, DIST, 0.3, steps=40)
    assert got is not None and got.hypers == ["lr"] and got.steps == 40
    assert got.latest == got.best == 0
    assert _trial_schedule_info(empty, 0, {"x": 1.0}, {}, 0.3) is None
    assert _trial_schedule_info(empty, 0, {"lr_1": 0.1}, DIST, 0.3) is None  # window 0 missing


def objective(trial: optuna.Trial) -> float:
    lr = [trial.suggest_float(f"lr_{k}", 1e-3, 1.0, log=True) for k in range(2)]
    trial.set_user_attr("steps", 20)
    if trial.number == 2:
        raise RuntimeError("episode failed")
    return sum(lr)


def test_callback_uploads_each_trial_schedule_and_keeps_study_figures(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'd.db'}"
    study = optuna.create_study(storage=storage, study_name="d")
    dashboard = DashboardCallback(tmp_path / "artifacts")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about when all is well
        study.optimize(
            dashboard.wrap(objective), n_trials=4, callbacks=[dashboard], catch=(RuntimeError,)
        )
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL, TrialState.COMPLETE]
    for t in study.trials:  # the failed trial's schedule is uploaded too
        (meta,) = get_all_artifact_meta(t, storage=study._storage)
        assert meta.filename == f"schedule-trial-{t.number}.png" and meta.mimetype == "image/png"
        png = tmp_path / "artifacts" / meta.artifact_id
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    attrs = study._storage.get_study_system_attrs(study._study_id)
    for fig_id in (SCHEDULES_FIGURE, HYPERGRADIENTS_FIGURE):
        assert any(k.startswith(f"dashboard:plot_data:{fig_id}:") for k in attrs)
    assert dashboard.wrap(objective).__name__ == "objective"


class BrokenStore:
    def write(self, artifact_id: str, content_body: Any) -> None:
        raise OSError("disk full")


def test_an_unavailable_store_warns_and_never_fails_a_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the artifact directory should be")
    study = optuna.create_study()
    dashboard = DashboardCallback(blocked)
    with pytest.warns(RuntimeWarning, match="could not upload the schedule of trial 0"):
        study.optimize(dashboard.wrap(lambda t: objective(t)), n_trials=1, callbacks=[dashboard])
    assert study.trials[0].state == TrialState.COMPLETE
    monkeypatch.setattr(DashboardCallback, "_artifact_store", lambda self: BrokenStore())
    with pytest.warns(RuntimeWarning, match="OSError: disk full"):
        study.optimize(dashboard.wrap(objective), n_trials=1)
    assert study.trials[1].state == TrialState.COMPLETE


def test_failing_figures_warn_and_never_fail_a_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_fmd.visualization import _dashboard

    def broken(study: optuna.Study, space: object = None) -> None:
        raise RuntimeError("no optuna-dashboard")

    monkeypatch.setattr(_dashboard, "refresh_figures", broken)
    study = optuna.create_study()
    with pytest.warns(RuntimeWarning, match="could not save the schedule figures"):
        study.optimize(objective, n_trials=1, callbacks=[DashboardCallback("unused")])
    assert study.trials[0].state == TrialState.COMPLETE
    quiet = DashboardCallback("unused", figures=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        study.optimize(objective, n_trials=1, callbacks=[quiet])


def test_objective_errors_still_propagate(tmp_path: Path) -> None:
    dashboard = DashboardCallback(tmp_path)
    study = optuna.create_study()
    study.enqueue_trial({"lr_0": 0.1, "lr_1": 0.1})
    study.optimize(objective, n_trials=2)  # trials 0 and 1
    with pytest.raises(RuntimeError, match="episode failed"):
        study.optimize(dashboard.wrap(objective), n_trials=1)  # trial 2 raises
    assert study.trials[2].state == TrialState.FAIL


def test_image_titles() -> None:
    from optuna_fmd.visualization._dashboard import _title

    assert _title(3, 0.51234, False) == "trial 3: value 0.5123"
    assert _title(3, None, True) == "trial 3: failed"
    assert _title(3, None, False) == "trial 3: no value"  # pruned
    assert _title(3, math.inf, False).startswith("trial 3: diverged")


def test_the_study_note_shows_the_best_iterate_and_keeps_the_users_text() -> None:
    from optuna_dashboard import get_note, save_note

    space = fmd.ScheduleSpace(
        {"lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True, init=0.05)}
    )
    sampler = fmd.FMDSampler(space, seed=0, population=2)
    study = optuna.create_study(sampler=sampler)
    save_note(study, "my own words")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    luck = {0: -1.0, 1: 2.0}  # trial 0 is the luckiest seed of a poor first iterate

    def objective(t: optuna.Trial) -> float:
        lr = [t.suggest_float(f"lr_{k}", 1e-3, 1.0, log=True) for k in (0, 1)]
        return (lr[0] - 0.3) ** 2 + (lr[1] - 0.3) ** 2 + luck.get(t.number, 0.0)

    study.optimize(objective, n_trials=6, callbacks=[DashboardCallback("unused")])
    best = sampler.best_iterate(study)
    assert best is not None
    value, params, numbers = best.value, best.params, best.trials
    note = get_note(study)
    assert note.startswith("my own words\n\n## Best iterate (optuna-fmd)")
    assert f"**Trials {', '.join(map(str, numbers))}**: mean value **{value:.4f}**" in note
    assert study.best_trial.number not in numbers
    assert f"The Best Trial card shows trial {study.best_trial.number}" in note
    lr = space.from_params(params)["lr"]
    assert f"| lr | {lr[0]:.4g} {lr[1]:.4g} |" in note
    # a later save replaces the section only
    save_note(study, note + "\n## Later\n\nmore of mine")
    assert save_best_note(study)
    again = get_note(study)
    assert again.count("## Best iterate") == 1 and again.endswith("## Later\n\nmore of mine")
    assert not save_best_note(optuna.create_study())  # not an FMD study: nothing written


def test_the_dashboard_figures_fit_their_cards() -> None:
    figures = dict(dashboard_figures(crowded_study()))
    assert set(figures) == {SCHEDULES_FIGURE, HYPERGRADIENTS_FIGURE}
    for fig in figures.values():
        assert fig.layout.height == DASHBOARD_HEIGHT
        check_panels(fig)  # y tick labels apart, no blank gaps
        # the legend right of the panels, from their top, all of its entries in view
        legend = fig.layout.legend
        assert legend.x >= 1.0 and legend.y == 1.0 and legend.yanchor == "top"
        assert legend_px(fig) <= plot_px(fig)
    schedules = figures[SCHEDULES_FIGURE]
    names = [t.name for t in legend_entries(schedules)]
    assert names[:2] == ["trial 23 (latest)", "best iterate (mean 0.125):<br>trials 16, 17"]
    lr = y_axes(schedules)[0]
    assert lr.type == "log" and len(lr.tickvals) <= 3

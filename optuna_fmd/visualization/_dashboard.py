"""optuna-dashboard integration: each trial's schedule as an artifact, the study's figures live.

Both are best effort: nothing here ever fails a trial or stops a study (a warning instead).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._schedules import (
    ScheduleInfo,
    TrialSchedule,
    _complete,
    _get_schedule_info,
    _split_params,
    plot_hypergradients,
    plot_schedules,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["DashboardCallback"]

#: Stable ids of the study's figures in optuna-dashboard (each refresh overwrites its figure).
SCHEDULES_FIGURE = "fmd-schedules"
HYPERGRADIENTS_FIGURE = "fmd-hypergradients"


def _trial_schedule_info(
    info: ScheduleInfo,
    number: int,
    params: Mapping[str, Any],
    distributions: Mapping[str, Any],
    value: float | None,
    steps: Any = None,
) -> ScheduleInfo | None:
    """The study's schedules up to trial ``number``, that trial (running or failed) the latest.

    ``info`` is the study's :class:`ScheduleInfo` (completed trials); the trial itself comes from
    its params, as it is not complete yet when its image is made. ``None`` if it has no schedule.
    """
    from optuna.distributions import FloatDistribution

    split = _split_params(dict(params))
    schedules = {h: v for h, w in split.items() if (v := _complete(w)) is not None}
    if not schedules:
        return None
    hypers = list(info.hypers) + [h for h in schedules if h not in info.hypers]
    log = dict(info.log)
    for h in schedules:
        if h not in log:
            dist = distributions.get(f"{h}_0")
            log[h] = isinstance(dist, FloatDistribution) and dist.log
    finite = value if value is not None and math.isfinite(value) else None
    trials = [t for t in info.trials if t.number < number]
    trials.append(TrialSchedule(number, finite, schedules))
    scored = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    best = min(scored, key=lambda t: (t.value, t.number)).number if scored else None
    own_steps = steps if isinstance(steps, int) and steps > 0 else info.steps
    return ScheduleInfo(hypers, log, own_steps, trials, number, best)


def _title(number: int, value: float | None, failed: bool) -> str:
    if failed:
        return f"trial {number}: failed"
    if value is None:
        return f"trial {number}: no value"
    if not math.isfinite(value):
        return f"trial {number}: diverged (value {value})"
    return f"trial {number}: value {value:.4g}"


class DashboardCallback:
    """Shows an FMD study in optuna-dashboard: schedule images per trial, live study figures.

    Two hooks, both best effort (any error becomes a warning; a trial never fails because of
    them):

    - :meth:`wrap` wraps the objective, so that each trial uploads a PNG of its schedules (over
      the earlier trials' schedules) as an Optuna artifact to a
      :class:`~optuna.artifacts.FileSystemArtifactStore` in ``artifact_dir``, while the trial
      still runs (Optuna refuses artifacts on finished trials);
    - the instance itself is a study callback that keeps the study's plotly figures of all
      schedules and hypergradients up to date with ``optuna_dashboard.save_plotly_graph_object``.

    Args:
        artifact_dir: Directory of the artifact store (created if missing). Start the dashboard
            with ``optuna-dashboard <storage> --artifact-dir <artifact_dir>``.
        figures: Whether the callback refreshes the study's figures.

    Example:
        >>> dashboard = DashboardCallback("optuna-fmd-artifacts")  # doctest: +SKIP
        >>> study.optimize(dashboard.wrap(objective), n_trials=20, callbacks=[dashboard])
        ... # doctest: +SKIP
    """

    def __init__(self, artifact_dir: str | os.PathLike[str], *, figures: bool = True) -> None:
        self.artifact_dir = os.path.abspath(os.fspath(artifact_dir))
        self.figures = figures
        self._store: Any = None

    # -- artifacts ---------------------------------------------------------------------------
    def wrap(self, objective: Callable[[optuna.Trial], Any]) -> Callable[[optuna.Trial], Any]:
        """The objective, uploading the trial's schedule image once it has returned or raised."""

        from optuna import TrialPruned

        def wrapped(trial: optuna.Trial) -> Any:
            try:
                value = objective(trial)
            except Exception as err:
                self.upload_schedule(trial, None, failed=not isinstance(err, TrialPruned))
                raise
            number = value if isinstance(value, (int, float)) else None
            self.upload_schedule(trial, None if number is None else float(number))
            return value

        wrapped.__name__ = getattr(objective, "__name__", "objective")
        wrapped.__doc__ = getattr(objective, "__doc__", None)
        return wrapped

    def _artifact_store(self) -> Any:
        if self._store is None:
            from optuna.artifacts import FileSystemArtifactStore

            os.makedirs(self.artifact_dir, exist_ok=True)
            self._store = FileSystemArtifactStore(self.artifact_dir)
        return self._store

    def upload_schedule(
        self, trial: optuna.Trial, value: float | None, *, failed: bool = False
    ) -> str | None:
        """Upload ``schedule-trial-<n>.png`` to the running ``trial``; the artifact id or None.

        Never raises: a store that is unavailable (or plotting that fails) gives a warning.
        """
        try:
            return self._upload(trial, value, failed)
        except Exception as err:
            warnings.warn(
                f"optuna-fmd: could not upload the schedule of trial {trial.number} to the "
                f"artifact store in {self.artifact_dir!r} ({type(err).__name__}: {err}); the "
                "trial goes on without it.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None

    def _upload(self, trial: optuna.Trial, value: float | None, failed: bool) -> str | None:
        from optuna.artifacts import upload_artifact

        from .matplotlib._schedules import _schedules_axes

        info = _trial_schedule_info(
            _get_schedule_info(trial.study),
            trial.number,
            trial.params,
            trial.distributions,
            value,
            trial.user_attrs.get("steps"),
        )
        if info is None:
            return None
        store = self._artifact_store()
        axes = _schedules_axes(info, pyplot=False, title=_title(trial.number, value, failed))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"schedule-trial-{trial.number}.png")
            axes[0].figure.savefig(path, dpi=90)
            return upload_artifact(
                artifact_store=store, file_path=path, study_or_trial=trial, mimetype="image/png"
            )

    # -- study figures -----------------------------------------------------------------------
    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Study callback: refresh the study's schedule and hypergradient figures."""
        if not self.figures:
            return
        try:
            refresh_figures(study)
        except Exception as err:
            warnings.warn(
                f"optuna-fmd: could not save the schedule figures of study "
                f"{study.study_name!r} for optuna-dashboard ({type(err).__name__}: {err}).",
                RuntimeWarning,
                stacklevel=2,
            )


#: optuna-dashboard draws user-defined figures in cards of this height (pixels).
DASHBOARD_HEIGHT = 450


def refresh_figures(study: optuna.Study) -> None:
    """Save the study's schedule and hypergradient plotly figures for optuna-dashboard."""
    from optuna_dashboard import save_plotly_graph_object

    for fig_id, fig in (
        (SCHEDULES_FIGURE, plot_schedules(study)),
        (HYPERGRADIENTS_FIGURE, plot_hypergradients(study)),
    ):
        fig.update_layout(height=DASHBOARD_HEIGHT, margin={"l": 60, "r": 20, "t": 70, "b": 50})
        save_plotly_graph_object(study, fig, graph_object_id=fig_id)

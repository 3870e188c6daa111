"""optuna-dashboard integration: each trial's schedule as an artifact, the study's figures live.

Both are best effort: nothing here ever fails a trial or stops a study (a warning instead).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..outer import best_group
from ..sampler import FMDSampler
from ..space import ScheduleSpace
from ._classes import plot_class_weights
from ._layout import DASHBOARD_HEIGHT
from ._schedules import (
    ScheduleInfo,
    TrialSchedule,
    _best_label,
    _fitted_range,
    _get_schedule_info,
    class_weight_entries,
    plot_hypergradients,
    plot_schedules,
)
from ._study import StudyNames, space_of

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DashboardCallback",
    "best_note",
    "dashboard_figures",
    "note_with_section",
    "save_best_note",
]

#: Stable ids of the study's figures in optuna-dashboard (each refresh overwrites its figure).
SCHEDULES_FIGURE = "fmd-schedules"
HYPERGRADIENTS_FIGURE = "fmd-hypergradients"
CLASS_WEIGHTS_FIGURE = "fmd-class-weights"


def _trial_schedule_info(
    info: ScheduleInfo,
    number: int,
    params: Mapping[str, Any],
    distributions: Mapping[str, Any],
    value: float | None,
    steps: Any = None,
    *,
    space: ScheduleSpace | None = None,
    user_attrs: Mapping[str, Any] | None = None,
    iterate: int | None = None,
    earlier: Sequence[tuple[int, int | None, float]] | None = None,
    population: int = 1,
) -> ScheduleInfo | None:
    """The study's schedules up to trial ``number``, that trial (running or failed) the latest.

    ``info`` is the study's :class:`ScheduleInfo` (completed trials); the trial itself comes from
    its params (read through ``space``, else by their names and ``user_attrs["schedules"]``),
    as it is not complete yet when its image is made. The best is the best iterate by member
    mean of the earlier trials and this one (``iterate``: this trial's outer iterate;
    ``earlier``: ``(number, iterate, value)`` of the earlier complete trials with a finite
    value, default those of ``info``; ``population``: members per iterate). ``None`` if the
    trial has no schedule.
    """
    from optuna.distributions import FloatDistribution

    names = StudyNames(space)
    schedules = names.schedules(params, user_attrs or {})
    if not schedules:
        return None
    hypers = list(info.hypers) + [h for h in schedules if h not in info.hypers]
    log = dict(info.log)
    for h in schedules:
        if h not in log:
            dists = [
                d
                for n, d in distributions.items()
                if (ref := names.ref(n, list(schedules))) is not None and ref.entry == h
            ]
            log[h] = any(isinstance(d, FloatDistribution) and d.log for d in dists)
    finite = value if value is not None and math.isfinite(value) else None
    trials = [t for t in info.trials if t.number < number]
    trials.append(TrialSchedule(number, finite, schedules))
    if earlier is None:
        earlier = [
            (t.number, None, t.value)
            for t in trials[:-1]
            if t.value is not None and math.isfinite(t.value)
        ]
    points = [p for p in earlier if p[0] < number]
    if finite is not None:
        points.append((number, iterate, finite))
    best = best_group(points, population)
    best_number = None if best is None else best.trials[0]
    if best_number is not None and best_number not in {t.number for t in trials}:
        best_number = None
    ranges: dict[str, tuple[float, float] | None] = {}
    for h in hypers:
        values = [v for t in trials for v in t.schedules.get(h, []) if math.isfinite(v)]
        ranges[h] = None if log.get(h) or not values else _fitted_range(values)
    own_steps = steps if isinstance(steps, int) and steps > 0 else info.steps
    label = (
        _best_label(best.value, best.trials)
        if best is not None and best_number is not None
        else ""
    )
    return ScheduleInfo(hypers, log, own_steps, trials, number, best_number, label, ranges)


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
      schedules and hypergradients (and of the class weights, when the space has them) up to
      date with ``optuna_dashboard.save_plotly_graph_object``.

    Args:
        artifact_dir: Directory of the artifact store (created if missing). Start the dashboard
            with ``optuna-dashboard <storage> --artifact-dir <artifact_dir>``.
        figures: Whether the callback refreshes the study's figures.
        space: The study's :class:`~optuna_fmd.ScheduleSpace` (default: its FMDSampler's,
            else read from the param names and the objective's stored schedules).

    Example:
        >>> dashboard = DashboardCallback("optuna-fmd-artifacts")  # doctest: +SKIP
        >>> study.optimize(dashboard.wrap(objective), n_trials=20, callbacks=[dashboard])
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        artifact_dir: str | os.PathLike[str],
        *,
        figures: bool = True,
        space: ScheduleSpace | None = None,
    ) -> None:
        self.artifact_dir = os.path.abspath(os.fspath(artifact_dir))
        self.figures = figures
        self.space = space
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
        from optuna.trial import TrialState

        from ._study import stored_population, trial_iterate
        from .matplotlib._schedules import _schedules_axes

        study = trial.study
        space = space_of(study, self.space)
        earlier, population = [], stored_population(study)
        for t in study.get_trials(deepcopy=False):
            slot = trial_iterate(t)
            if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
                earlier.append((t.number, None if slot is None else slot[0], float(t.value)))
        own = trial_iterate(study._storage.get_trial(trial._trial_id))
        info = _trial_schedule_info(
            _get_schedule_info(study, space),
            trial.number,
            trial.params,
            trial.distributions,
            value,
            trial.user_attrs.get("steps"),
            space=space,
            user_attrs=trial.user_attrs,
            iterate=None if own is None else own[0],
            earlier=earlier,
            population=population,
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
        """Study callback: refresh the study's schedule and hypergradient figures, and the
        best iterate in the study's note (:func:`save_best_note`)."""
        if not self.figures:
            return
        try:
            refresh_figures(study, self.space)
            save_best_note(study)
        except Exception as err:
            warnings.warn(
                f"optuna-fmd: could not save the schedule figures of study "
                f"{study.study_name!r} for optuna-dashboard ({type(err).__name__}: {err}).",
                RuntimeWarning,
                stacklevel=2,
            )


#: The heading of the section of the study's note that optuna-fmd keeps up to date; the rest
#: of the note (above it, or from the next heading of its level on) is the user's own.
NOTE_HEADING = "## Best iterate (optuna-fmd)"


def best_note(study: optuna.Study) -> str | None:
    """The best iterate of a study run by an :class:`~optuna_fmd.FMDSampler`, as Markdown for
    optuna-dashboard's study note: its trials, the mean value over its members and its
    schedules, from :meth:`~optuna_fmd.FMDSampler.best_iterate`; and, where Optuna's best
    trial (the dashboard's "Best Trial" card) is a single lucky member, that it is one.
    ``None`` when the study's sampler is not an FMDSampler."""
    sampler = getattr(study, "sampler", None)
    if not isinstance(sampler, FMDSampler):
        return None
    best = sampler.best_iterate(study)
    lines = [NOTE_HEADING, ""]
    if best is None:
        return "\n".join([*lines, "No trial with a finite value yet."])
    if best.members == 1:
        lines.append(f"**Trial {best.trials[0]}**: value **{best.value:.4f}**.")
    else:
        which = ", ".join(map(str, best.trials))
        lines.append(
            f"**Trials {which}**: mean value **{best.value:.4f}** over the iterate's "
            f"{best.members} seeds, what the sampler compares."
        )
        lucky = study.best_trial
        if lucky.number not in best.trials and lucky.value is not None:
            lines.append(
                f"The Best Trial card shows trial {lucky.number} ({lucky.value:.4f}), the "
                "luckiest single seed, not the best iterate."
            )
    try:
        schedules = sampler.space.from_params(best.params)
    except ValueError:
        schedules = {}
    if schedules:
        lines += ["", "| schedule | window values |", "| --- | --- |"]
        lines += [f"| {n} | {' '.join(f'{v:.4g}' for v in vs)} |" for n, vs in schedules.items()]
    return "\n".join(lines)


def note_with_section(note: str, section: str) -> str:
    """``note`` with its :data:`NOTE_HEADING` section replaced by ``section`` (appended when
    it has none); the user's text around it is kept."""
    head, sep, rest = note.partition(NOTE_HEADING)
    if not sep:
        return (note.rstrip() + "\n\n" + section) if note.strip() else section
    after = rest.split("\n## ", 1)
    tail = "\n## " + after[1] if len(after) > 1 else ""
    return head + section + ("\n" + tail if tail else "")


def save_best_note(study: optuna.Study) -> bool:
    """Write the study's best iterate (:func:`best_note`) into its optuna-dashboard note, where
    the dashboard's study page shows it; only when it changed. ``False`` when there is nothing
    to write (not an FMD study) or optuna-dashboard is not installed."""
    body = best_note(study)
    if body is None:
        return False
    try:
        from optuna_dashboard import get_note, save_note  # lazily: an optional dependency
    except ImportError:
        return False
    try:
        old = get_note(study)
    except (KeyError, TypeError):  # no note yet
        old = ""
    new = note_with_section(old or "", body)
    if new != old:
        save_note(study, new)
    return True


def dashboard_figures(
    study: optuna.Study, space: ScheduleSpace | None = None
) -> list[tuple[str, Any]]:
    """``(figure id, plotly figure)`` of each of the study's figures in optuna-dashboard, laid
    out for its cards of :data:`DASHBOARD_HEIGHT` pixels: the schedules, the hypergradients
    and, when the space has class weights, the class weights."""
    space = space_of(study, space)
    figures = [
        (SCHEDULES_FIGURE, plot_schedules(study, space=space, height=DASHBOARD_HEIGHT)),
        (HYPERGRADIENTS_FIGURE, plot_hypergradients(study, space=space, height=DASHBOARD_HEIGHT)),
    ]
    if class_weight_entries(space):
        fig = plot_class_weights(study, space=space)
        fig.update_layout(height=DASHBOARD_HEIGHT, margin={"l": 60, "r": 20, "t": 70, "b": 50})
        figures.append((CLASS_WEIGHTS_FIGURE, fig))
    return figures


def refresh_figures(study: optuna.Study, space: ScheduleSpace | None = None) -> None:
    """Save the study's :func:`dashboard_figures` for optuna-dashboard."""
    from optuna_dashboard import save_plotly_graph_object  # lazily: an optional dependency

    for fig_id, fig in dashboard_figures(study, space):
        save_plotly_graph_object(study, fig, graph_object_id=fig_id)

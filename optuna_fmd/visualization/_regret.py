"""Best value so far against wall-clock time, for several studies (e.g. FMD vs TPE)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..outer import best_group, sense_sign

if TYPE_CHECKING:
    import optuna

__all__ = ["RegretCurve", "plot_regret"]


class RegretCurve(NamedTuple):
    """One study's best finite value after each completed trial, against seconds since its start.

    Attributes:
        name: The study's name.
        seconds: Wall-clock seconds from the study's first trial start to each trial's end.
        best: Best finite value up to that trial (``nan`` before the first finite one); with a
            population, the best outer iterate's mean over its members, as the sampler
            compares them (an iterate counts once all its members are done).
    """

    name: str
    seconds: list[float]
    best: list[float]


def _get_regret_info(
    studies: Sequence[optuna.Study], time_attr: str | None = None
) -> list[RegretCurve]:
    """The regret curve of each study.

    ``time_attr=None``: completed trials with start and end times, against wall-clock seconds
    since the study's first trial started. Otherwise completed trials whose user attribute
    ``time_attr`` is a finite number, against that number (e.g. seconds on the clock a benchmark
    budgets).
    """
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from ._study import stored_population, trial_iterate

    curves = []
    for study in studies:
        maximize = len(study.directions) == 1 and study.direction == StudyDirection.MAXIMIZE
        slots = {t.number: trial_iterate(t) for t in study.get_trials(deepcopy=False)}
        size = stored_population(study)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        times: list[tuple[float, optuna.trial.FrozenTrial]] = []
        if time_attr is None:
            timed = [t for t in done if t.datetime_start and t.datetime_complete]
            if timed:
                start = min(t.datetime_start for t in timed)  # type: ignore[type-var]
                times = [
                    ((t.datetime_complete - start).total_seconds(), t)  # type: ignore[operator]
                    for t in timed
                ]
        else:
            for t in done:
                v = t.user_attrs.get(time_attr)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    times.append((float(v), t))
        times.sort(key=lambda p: p[0])
        seconds, best, current = [], [], math.nan
        points: list[tuple[int, int | None, float]] = []
        for x, t in times:
            if t.value is not None and math.isfinite(t.value):
                slot = slots.get(t.number)
                points.append((t.number, None if slot is None else slot[0], float(t.value)))
                found = best_group(points, size, sense_sign(maximize))
                current = math.nan if found is None else found.value
            seconds.append(x)
            best.append(current)
        curves.append(RegretCurve(study.study_name, seconds, best))
    return curves


def _time_label(time_attr: str | None) -> str:
    if time_attr is None:
        return "seconds since the study's first trial"
    return f"seconds (trial user attr {time_attr!r})"


def plot_regret(
    studies: optuna.Study | Sequence[optuna.Study], *, time_attr: str | None = None
) -> Any:
    """Best validation loss against wall-clock seconds, one line per study.

    Args:
        studies: One study or several (e.g. an FMD study and a TPE study on the same space).
        time_attr: Plot against this trial user attribute (seconds on another clock, e.g. the
            CPU-time budget of a benchmark) instead of wall-clock time.

    Example:
        >>> fig = plot_regret([fmd_study, tpe_study])  # doctest: +SKIP
    """
    import optuna
    import plotly.graph_objects as go

    if isinstance(studies, optuna.Study):
        studies = [studies]
    fig = go.Figure()
    for curve in _get_regret_info(studies, time_attr):
        fig.add_trace(
            go.Scatter(
                x=curve.seconds,
                y=curve.best,
                mode="lines+markers",
                name=curve.name,
                line={"shape": "hv"},
            )
        )
    fig.update_layout(
        title="Best value vs wall-clock time" if time_attr is None else "Best value vs time",
        xaxis_title=_time_label(time_attr),
        yaxis_title="best value",
    )
    return fig

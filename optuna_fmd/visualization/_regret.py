"""Best value so far against wall-clock time, for several studies (e.g. FMD vs TPE)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import optuna

__all__ = ["RegretCurve", "plot_regret"]


class RegretCurve(NamedTuple):
    """One study's best finite value after each completed trial, against seconds since its start.

    Attributes:
        name: The study's name.
        seconds: Wall-clock seconds from the study's first trial start to each trial's end.
        best: Best (lowest) finite value up to that trial (``nan`` before the first finite one).
    """

    name: str
    seconds: list[float]
    best: list[float]


def _get_regret_info(studies: Sequence[optuna.Study]) -> list[RegretCurve]:
    """The regret curve of each study (completed trials with start and end times)."""
    from optuna.trial import TrialState

    curves = []
    for study in studies:
        trials = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.datetime_start is not None and t.datetime_complete is not None
        ]
        trials.sort(key=lambda t: t.datetime_complete)  # type: ignore[arg-type,return-value]
        if not trials:
            curves.append(RegretCurve(study.study_name, [], []))
            continue
        start = min(t.datetime_start for t in trials)  # type: ignore[type-var]
        seconds, best, current = [], [], math.nan
        for t in trials:
            if t.value is not None and math.isfinite(t.value):
                current = t.value if math.isnan(current) else min(current, t.value)
            seconds.append((t.datetime_complete - start).total_seconds())  # type: ignore[operator]
            best.append(current)
        curves.append(RegretCurve(study.study_name, seconds, best))
    return curves


def plot_regret(studies: optuna.Study | Sequence[optuna.Study]) -> Any:
    """Best validation loss against wall-clock seconds, one line per study.

    Example:
        >>> fig = plot_regret([fmd_study, tpe_study])  # doctest: +SKIP
    """
    import optuna
    import plotly.graph_objects as go

    if isinstance(studies, optuna.Study):
        studies = [studies]
    fig = go.Figure()
    for curve in _get_regret_info(studies):
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
        title="Best value vs wall-clock time",
        xaxis_title="seconds since the study's first trial",
        yaxis_title="best value",
    )
    return fig

"""Schedules and hypergradients of an FMD study, gathered as plain data and drawn with plotly."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple

from .._population import iterate_groups

if TYPE_CHECKING:
    import optuna

__all__ = [
    "HypergradientInfo",
    "ScheduleInfo",
    "TrialSchedule",
    "plot_hypergradients",
    "plot_schedules",
]

_PARAM = re.compile(r"^(?P<hyper>[A-Za-z_][A-Za-z0-9_]*)_(?P<k>\d+)$")


class TrialSchedule(NamedTuple):
    """One trial's schedules: ``{hyper: [window values]}`` and its objective value."""

    number: int
    value: float | None
    schedules: dict[str, list[float]]


class ScheduleInfo(NamedTuple):
    """Everything :func:`plot_schedules` draws.

    Attributes:
        hypers: Scheduled hyperparameters, in first-seen order.
        log: Whether each hyper was searched on a log scale.
        steps: The episode length (from the trials' ``steps`` user attr), or ``None``.
        trials: Completed trials with a full schedule, in trial order.
        latest: Number of the latest of them (highlighted), or ``None`` if there is none.
        best: Number of the best of them (lowest finite value), or ``None``.
    """

    hypers: list[str]
    log: dict[str, bool]
    steps: int | None
    trials: list[TrialSchedule]
    latest: int | None
    best: int | None


class HypergradientInfo(NamedTuple):
    """Everything :func:`plot_hypergradients` draws: per row, per param, per outer step.

    A row is a hyperparameter's window params (``lr_0``, ``lr_1`` ... in row ``lr``; a
    refiner's corrections ``lr_delta_k`` in row ``lr_delta``) or a family's parameters
    (``lr_peak``, ``lr_warmup`` in row ``lr``; ``momentum_value`` in row ``momentum``).

    Attributes:
        hypers: Rows with a hypergradient, in first-seen order.
        numbers: Trial numbers that carry a finite hypergradient.
        values: ``values[row][j][i]`` = dL/d(``labels[row][j]``) of trial ``numbers[i]`` (NaN
            if absent).
        labels: The param of each series of a row: windows in order, then family parameters.
    """

    hypers: list[str]
    numbers: list[int]
    values: dict[str, list[list[float]]]
    labels: dict[str, list[str]]


def _row_of(name: str) -> tuple[str, tuple[int, int | str]]:
    """A hypergradient param's row and its order within the row (windows first, by k)."""
    m = _PARAM.match(name)
    if m:
        return m["hyper"], (0, int(m["k"]))
    row, _, _ = name.rpartition("_")
    return (row or name), (1, name)


def _split_params(params: dict[str, Any]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for name, value in params.items():
        m = _PARAM.match(name)
        if m and isinstance(value, (int, float)):
            out.setdefault(m["hyper"], {})[int(m["k"])] = float(value)
    return out


def _complete(windows: dict[int, float]) -> list[float] | None:
    if not windows or sorted(windows) != list(range(len(windows))):
        return None
    return [windows[k] for k in range(len(windows))]


def _get_schedule_info(study: optuna.Study) -> ScheduleInfo:
    """Gather each completed trial's window schedules (params ``<hyper>_<k>``)."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    hypers: list[str] = []
    log: dict[str, bool] = {}
    trials: list[TrialSchedule] = []
    iterate: dict[int, int] = {}  # trial -> its outer iterate, with a population
    steps: int | None = None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        it = trial.user_attrs.get("iterate")
        if isinstance(it, int) and not isinstance(it, bool):
            iterate[trial.number] = it
        split = _split_params(trial.params)
        schedules = {h: v for h, w in split.items() if (v := _complete(w)) is not None}
        stored = trial.user_attrs.get("schedules")  # a family space's window values
        if isinstance(stored, dict):
            schedules = {
                str(h): [float(x) for x in v]
                for h, v in stored.items()
                if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)
            }
        if not schedules:
            continue
        for h in schedules:
            if h not in hypers:
                hypers.append(h)
                dists = [d for n, d in trial.distributions.items() if n.startswith(f"{h}_")]
                log[h] = any(isinstance(d, FloatDistribution) and d.log for d in dists)
        s = trial.user_attrs.get("steps")
        if isinstance(s, int) and s > 0:
            steps = s
        trials.append(TrialSchedule(trial.number, trial.value, schedules))
    finite = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    best = _best_number(finite, iterate)
    latest = trials[-1].number if trials else None
    return ScheduleInfo(hypers, log, steps, trials, latest, best)


def _best_number(finite: list[TrialSchedule], iterate: dict[int, int]) -> int | None:
    """The best trial; with a population (several trials per iterate), the first member of the
    iterate with the lowest mean over its members, as FMDSampler.best_iterate compares them."""
    counts = Counter(iterate.get(t.number) for t in finite)
    counts.pop(None, None)
    size = max(counts.values(), default=1)
    points = [
        (t.number, iterate.get(t.number), t.value or 0.0)
        for t in finite
        if size == 1 or t.number in iterate
    ]
    groups = iterate_groups(points, size)
    return min(groups, key=lambda g: g[0])[1][0] if groups else None


def _get_hypergradient_info(study: optuna.Study) -> HypergradientInfo:
    """Gather ``user_attrs["hypergradient"]`` of completed trials (skipping bad or missing)."""
    from optuna.trial import TrialState

    rows: list[tuple[int, dict[str, float]]] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        hg = trial.user_attrs.get("hypergradient")
        if not isinstance(hg, dict) or not hg:
            continue
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in hg.values()):
            rows.append((trial.number, {str(k): float(v) for k, v in hg.items()}))
    hypers: list[str] = []
    keys: dict[str, dict[str, tuple[int, int | str]]] = {}
    for _, hg in rows:
        for name in hg:
            row, order = _row_of(name)
            if row not in keys:
                hypers.append(row)
                keys[row] = {}
            keys[row][name] = order
    labels = {h: sorted(keys[h], key=lambda n: keys[h][n]) for h in hypers}
    values = {
        h: [[hg.get(name, math.nan) for _, hg in rows] for name in labels[h]] for h in hypers
    }
    return HypergradientInfo(hypers, [n for n, _ in rows], values, labels)


def _steps_axis(k: int, windows: int, steps: int | None) -> tuple[float, float]:
    total = steps if steps is not None else 1.0
    return k * total / windows, (k + 1) * total / windows


def plot_schedules(study: optuna.Study) -> Any:
    """Each completed trial's schedules over training, the latest highlighted, the best dashed.

    Args:
        study: A study whose trials suggest ``<hyper>_<k>`` window values (e.g. with
            :class:`~optuna_fmd.HypergradientObjective`).

    Returns:
        A ``plotly.graph_objects.Figure`` with one row per hyperparameter.

    Example:
        >>> fig = plot_schedules(study)  # doctest: +SKIP
        >>> fig.show()  # doctest: +SKIP
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    info = _get_schedule_info(study)
    rows = max(len(info.hypers), 1)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=info.hypers or None)
    n = len(info.trials)
    for i, trial in enumerate(info.trials):
        latest = trial.number == info.latest
        best = trial.number == info.best
        for r, hyper in enumerate(info.hypers, start=1):
            values = trial.schedules.get(hyper)
            if values is None:
                continue
            xs: list[float] = []
            ys: list[float] = []
            for k, v in enumerate(values):
                a, b = _steps_axis(k, len(values), info.steps)
                xs += [a, b]
                ys += [v, v]
            fade = 0.15 + 0.55 * (i + 1) / max(n, 1)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    name=f"trial {trial.number}"
                    + (" (latest)" if latest else "")
                    + (" (best)" if best else ""),
                    legendgroup=str(trial.number),
                    showlegend=r == 1,
                    opacity=1.0 if latest or best else fade,
                    line={
                        "width": 3 if latest else 1.5,
                        "color": "#d62728" if latest else ("#2ca02c" if best else "#1f77b4"),
                        "dash": "dash" if best and not latest else "solid",
                    },
                    hovertemplate=f"trial {trial.number}<br>{hyper} = %{{y:.4g}}<extra></extra>",
                ),
                row=r,
                col=1,
            )
        for r, hyper in enumerate(info.hypers, start=1):
            if info.log.get(hyper):
                fig.update_yaxes(type="log", row=r, col=1)
    fig.update_xaxes(
        title_text="training step" if info.steps is not None else "fraction of training",
        row=rows,
        col=1,
    )
    fig.update_layout(title="Schedules per trial", height=260 * rows + 80)
    return fig


def plot_hypergradients(study: optuna.Study) -> Any:
    """The hypergradient of each param over the outer steps (trials): a row per hyper's
    windows (``lr_0`` ...) or family parameters (``lr_peak`` ...), one per refiner's
    corrections (``lr_delta_k``).

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    info = _get_hypergradient_info(study)
    rows = max(len(info.hypers), 1)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=info.hypers or None)
    for r, hyper in enumerate(info.hypers, start=1):
        for name, series in zip(info.labels[hyper], info.values[hyper], strict=True):
            fig.add_trace(
                go.Scatter(
                    x=info.numbers,
                    y=series,
                    mode="lines+markers",
                    name=name,
                    hovertemplate=f"trial %{{x}}<br>dL/d{name} = %{{y:.4g}}<extra></extra>",
                ),
                row=r,
                col=1,
            )
        fig.add_hline(y=0.0, line={"color": "grey", "width": 1}, row=r, col=1)
    fig.update_xaxes(title_text="trial (outer step)", row=rows, col=1)
    fig.update_layout(title="Hypergradients per param", height=260 * rows + 80)
    return fig

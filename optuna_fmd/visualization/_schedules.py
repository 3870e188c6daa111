"""Schedules and hypergradients of an FMD study, gathered as plain data and drawn with plotly."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..space import ScheduleSpace
from ._study import (
    BestIterate,
    StudyNames,
    best_iterate,
    hypergradient_note,
    space_of,
    trial_iterate,
)

if TYPE_CHECKING:
    import optuna

__all__ = [
    "CLASS_WEIGHT",
    "HypergradientInfo",
    "IterateMeans",
    "ScheduleInfo",
    "TrialSchedule",
    "class_weight_entries",
    "draw_order",
    "iterate_means",
    "note_lines",
    "plot_hypergradients",
    "plot_schedules",
    "trial_ticks",
]


#: The hyper of a space entry that weights classes in the training loss.
CLASS_WEIGHT = "class_weight"


def class_weight_entries(space: ScheduleSpace | None) -> dict[str, tuple[str, ...]]:
    """``{entry: class patterns}`` of the space's class-weight entries, in entry order (an
    entry of every class, without a group, has the pattern ``"*"``); ``{}`` without a space."""
    if space is None:
        return {}
    groups = space.groups()
    return {
        name: groups[name][1] if name in groups else ("*",)
        for name, hyper in space.hypers().items()
        if hyper == CLASS_WEIGHT
    }


def _schedule_rows(hypers: list[str], space: ScheduleSpace | None) -> list[tuple[str, list[str]]]:
    """``(title, entries)`` per row of :func:`plot_schedules`: an entry each, except the class
    weights, which share one row (where the first of them would be)."""
    classes = [h for h in hypers if h in class_weight_entries(space)]
    rows: list[tuple[str, list[str]]] = []
    for h in hypers:
        if h not in classes or len(classes) == 1:
            rows.append((h, [h]))
        elif h == classes[0]:
            rows.append((f"{CLASS_WEIGHT} (per class)", classes))
    return rows


class TrialSchedule(NamedTuple):
    """One trial's schedules: ``{hyper: [window values]}`` and its objective value."""

    number: int
    value: float | None
    schedules: dict[str, list[float]]


class ScheduleInfo(NamedTuple):
    """Everything :func:`plot_schedules` draws.

    Attributes:
        hypers: Scheduled entries (hyperparameters or layer groups), in first-seen order.
        log: Whether each was searched on a log scale.
        steps: The episode length (from the trials' ``steps`` user attr), or ``None``.
        trials: Completed trials with a full schedule, in trial order; with a population, one
            per outer iterate (its first member: the members share the schedules).
        latest: Number of the latest of them (highlighted), or ``None`` if there is none.
        best: Number of the best of them: the first trial of the iterate with the best mean
            value over its members (the best trial without a population), or ``None``.
        best_label: The best iterate of a population in words (``best iterate: mean 0.1072
            of trials 6, 7``), ``""`` without a population.
        ranges: A y range fitted to the values of each linear entry (``None`` for log ones).
        note: What the figure does not show and why (``""``: nothing to say).
    """

    hypers: list[str]
    log: dict[str, bool]
    steps: int | None
    trials: list[TrialSchedule]
    latest: int | None
    best: int | None
    best_label: str = ""
    ranges: dict[str, tuple[float, float] | None] = {}  # noqa: RUF012 (never mutated)
    note: str = ""


class HypergradientInfo(NamedTuple):
    """Everything :func:`plot_hypergradients` draws: per row, per param, per outer step.

    A row is an entry's window params (``lr_0``, ``lr_1`` ... in row ``lr``), its family
    parameters (``lr_peak``, ``lr_warmup`` in row ``lr``; ``momentum_value`` in row
    ``momentum``) or a refiner's corrections (``lr_delta_k`` in row ``lr corrections``), as
    the space names them.

    Attributes:
        hypers: Rows with a hypergradient, in first-seen order.
        numbers: Trial numbers that carry a finite hypergradient.
        values: ``values[row][j][i]`` = dL/d(``labels[row][j]``) of trial ``numbers[i]`` (NaN
            if absent).
        labels: The param of each series of a row: windows in order, then family parameters.
        note: Why the figure holds what it holds, in words (e.g. ``"no hypergradient yet:
            the first 8 trials search the lr scale ... with plain episodes"``).
        iterates: The outer iterate of each of ``numbers`` (``None`` outside a population):
            the members of one iterate are evaluated side by side, not one after another.
    """

    hypers: list[str]
    numbers: list[int]
    values: dict[str, list[list[float]]]
    labels: dict[str, list[str]]
    note: str = ""
    iterates: list[int | None] = []  # noqa: RUF012 (never mutated)


class IterateMeans(NamedTuple):
    """A series of :class:`HypergradientInfo` as one point per outer iterate: ``x`` the mean
    trial number of its members, ``y`` their mean hypergradient (NaNs left out), ``members``
    the trial numbers averaged."""

    x: list[float]
    y: list[float]
    members: list[list[int]]


def iterate_means(info: HypergradientInfo, series: list[float]) -> IterateMeans:
    """One point per outer iterate of ``series`` (a row of ``info.values``): the members of
    an iterate averaged; a trial outside a population is a point of its own."""
    groups: dict[tuple[str, int], list[int]] = {}
    iterates = info.iterates or [None] * len(info.numbers)
    for i, (number, it) in enumerate(zip(info.numbers, iterates, strict=True)):
        if not math.isnan(series[i]):
            groups.setdefault(("i", it) if it is not None else ("t", number), []).append(i)
    out = IterateMeans([], [], [])
    for idx in sorted(groups.values(), key=lambda g: info.numbers[g[0]]):
        out.x.append(sum(info.numbers[i] for i in idx) / len(idx))
        out.y.append(sum(series[i] for i in idx) / len(idx))
        out.members.append([info.numbers[i] for i in idx])
    return out


def trial_ticks(numbers: Sequence[int], most: int = 12) -> list[int]:
    """Integer tick values over the trial numbers ``numbers``: every trial when there are at
    most ``most`` in their range, else a multiple of 1, 2 or 5 times a power of ten.

    Example:
        >>> trial_ticks([20, 21])
        [20, 21]
        >>> trial_ticks([0, 95])
        [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    """
    if not numbers:
        return []
    lo, hi = min(numbers), max(numbers)
    steps = (m * 10**e for e in range(12) for m in (1, 2, 5))
    step = next(s for s in steps if (hi - lo) // s + 1 <= most)
    first = -(-lo // step) * step
    return list(range(first, hi + 1, step))


def _fitted_range(values: list[float]) -> tuple[float, float]:
    """A y range that shows ``values`` (a flat line of 5e-4 reads as 5e-4, not as 0)."""
    lo, hi = min(values), max(values)
    span = hi - lo
    if span <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        pad = 0.1 * abs(lo) if lo != 0.0 else 1e-3
    else:
        pad = 0.08 * span
    return lo - pad, hi + pad


def _log_ticks(values: list[float]) -> list[float]:
    """Tick values of a log axis over ``values``: the 1-2-5 steps inside their range, or (when
    fewer than three fall inside) the range's ends and its geometric middle."""
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    if not pos:
        return []
    lo, hi = min(pos), max(pos)
    ticks = [
        m * 10.0**e
        for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
        for m in (1.0, 2.0, 5.0)
        if lo * (1 - 1e-9) <= m * 10.0**e <= hi * (1 + 1e-9)
    ]
    if len(ticks) >= 3:
        return ticks
    ends = sorted({lo, math.sqrt(lo * hi), hi})
    return [float(f"{v:.2g}") for v in ends]


def _get_schedule_info(study: optuna.Study, space: ScheduleSpace | None = None) -> ScheduleInfo:
    """Gather each completed trial's window schedules, read through the study's space."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    names = StudyNames(space_of(study, space))
    hypers: list[str] = []
    log: dict[str, bool] = {}
    trials: list[TrialSchedule] = []
    seen_iterates: set[int] = set()
    steps: int | None = None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        schedules = names.schedules(trial.params, trial.user_attrs)
        if not schedules:
            continue
        slot = trial_iterate(trial)
        if slot is not None:  # the members of an iterate share its schedules: draw it once
            if slot[0] in seen_iterates:
                continue
            seen_iterates.add(slot[0])
        for h in schedules:
            if h not in hypers:
                hypers.append(h)
                dists = [
                    d
                    for n, d in trial.distributions.items()
                    if (ref := names.ref(n, list(schedules))) is not None and ref.entry == h
                ]
                log[h] = any(
                    isinstance(d, FloatDistribution) and d.log and d.low > 0 for d in dists
                )
        s = trial.user_attrs.get("steps")
        if isinstance(s, int) and s > 0:
            steps = s
        trials.append(TrialSchedule(trial.number, trial.value, schedules))
    best = best_iterate(study)
    drawn = {t.number for t in trials}
    best_number = None
    if best is not None:
        best_number = next((n for n in best.numbers if n in drawn), None)
    latest = trials[-1].number if trials else None
    ranges: dict[str, tuple[float, float] | None] = {}
    for h in hypers:
        values = [v for t in trials for v in t.schedules.get(h, []) if math.isfinite(v)]
        ranges[h] = None if log.get(h) or not values else _fitted_range(values)
    note = "" if trials else "no completed trial with a schedule yet"
    label = _best_label(best) if best_number is not None else ""
    return ScheduleInfo(hypers, log, steps, trials, latest, best_number, label, ranges, note)


def _best_label(best: BestIterate | None) -> str:
    """How a legend names the best iterate of a population (``""``: a single best trial)."""
    if best is None or len(best.numbers) < 2:
        return ""
    return f"best iterate: mean {best.value:.4g} of trials {', '.join(map(str, best.numbers))}"


def _row_of(names: StudyNames, name: str) -> tuple[str, tuple[int, int | str]]:
    """A hypergradient param's row and its order within the row (windows first, by k)."""
    ref = names.ref(name)
    if ref is None:
        return name, (1, name)
    if ref.kind == "window":
        assert ref.window is not None
        return ref.entry, (0, ref.window)
    if ref.kind == "correction":
        assert ref.window is not None
        return f"{ref.entry} corrections", (0, ref.window)
    return ref.entry, (1, name)


def _get_hypergradient_info(
    study: optuna.Study, space: ScheduleSpace | None = None
) -> HypergradientInfo:
    """Gather ``user_attrs["hypergradient"]`` of completed trials (skipping bad or missing)."""
    from optuna.trial import TrialState

    names = StudyNames(space_of(study, space))
    rows: list[tuple[int, dict[str, float]]] = []
    iterates: list[int | None] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        hg = trial.user_attrs.get("hypergradient")
        if not isinstance(hg, dict) or not hg:
            continue
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in hg.values()):
            rows.append((trial.number, {str(k): float(v) for k, v in hg.items()}))
            slot = trial_iterate(trial)
            iterates.append(None if slot is None else slot[0])
    hypers: list[str] = []
    keys: dict[str, dict[str, tuple[int, int | str]]] = {}
    for _, hg in rows:
        for name in hg:
            row, order = _row_of(names, name)
            if row not in keys:
                hypers.append(row)
                keys[row] = {}
            keys[row][name] = order
    labels = {h: sorted(keys[h], key=lambda n: keys[h][n]) for h in hypers}
    values = {
        h: [[hg.get(name, math.nan) for _, hg in rows] for name in labels[h]] for h in hypers
    }
    note = hypergradient_note(study, len(rows))
    return HypergradientInfo(hypers, [n for n, _ in rows], values, labels, note, iterates)


def _steps_axis(k: int, windows: int, steps: int | None) -> tuple[float, float]:
    total = steps if steps is not None else 1.0
    return k * total / windows, (k + 1) * total / windows


def _stairs(values: Sequence[float], steps: int | None) -> tuple[list[float], list[float]]:
    """The points of a step-shaped line through window ``values`` over training."""
    xs: list[float] = []
    ys: list[float] = []
    for k, v in enumerate(values):
        a, b = _steps_axis(k, len(values), steps)
        xs += [a, b]
        ys += [v, v]
    return xs, ys


def draw_order(info: ScheduleInfo) -> list[tuple[int, TrialSchedule, str]]:
    """``(index, trial, role)`` in the order the schedules are drawn: the other trials first,
    then the latest (``"latest"``), then the best (``"best"``, dashed), on top of everything,
    so that the latest line never hides it; a trial that is both is drawn in both roles."""
    others = [
        (i, t, "other")
        for i, t in enumerate(info.trials)
        if t.number not in (info.latest, info.best)
    ]
    top = [
        (i, t, role)
        for role, number in (("latest", info.latest), ("best", info.best))
        for i, t in enumerate(info.trials)
        if t.number == number
    ]
    return others + top


def _best_name(info: ScheduleInfo) -> str:
    return info.best_label or "best"


#: Characters per line of a figure's note (the subtitle): about 600 pixels at its font size, so
#: that it fits the narrowest figure it is drawn on (a dashboard card) and is never cut off.
NOTE_WIDTH = 90
#: The top margin (pixels) of a figure with a title and no note; each line of a note adds
#: :data:`NOTE_LINE`.
TOP_MARGIN = 80
NOTE_LINE = 16


def note_lines(text: str, width: int = NOTE_WIDTH) -> list[str]:
    """``text`` wrapped into lines of at most ``width`` characters (words kept whole)."""
    return textwrap.wrap(text, width) if text else []


def _note(fig: Any, text: str, *, middle: bool) -> None:
    """``text`` on the figure, wrapped so that it is never cut off: in the middle of an empty
    figure, else under the title (the top margin grows to hold it)."""
    lines = note_lines(text)
    if not lines:
        return
    fig.add_annotation(
        text="<br>".join(lines),
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5 if middle else 1.0,
        yanchor="middle" if middle else "bottom",
        yshift=0 if middle else 24,
        showarrow=False,
        align="center",
        font={"color": "#555", "size": 13 if middle else 11},
        name="note",
    )
    if middle:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    else:
        fig.update_layout(margin={"t": TOP_MARGIN + 24 + NOTE_LINE * len(lines)})


def _schedule_yaxes(fig: Any, info: ScheduleInfo, rows: list[tuple[str, list[str]]]) -> None:
    """Each row's y axis: log ticks for a log-scale entry, else a range fitted to its values."""
    for r, (_, entries) in enumerate(rows, start=1):
        if any(info.log.get(h) for h in entries):
            values = [v for t in info.trials for h in entries for v in t.schedules.get(h, [])]
            ticks = _log_ticks(values)
            fig.update_yaxes(
                type="log",
                tickvals=ticks or None,
                ticktext=[f"{v:.3g}" for v in ticks] or None,
                row=r,
                col=1,
            )
        elif len(entries) > 1:  # the class weights' row: fitted to all of them
            values = [
                v
                for t in info.trials
                for h in entries
                for v in t.schedules.get(h, [])
                if math.isfinite(v)
            ]
            if values:
                fig.update_yaxes(range=list(_fitted_range(values)), row=r, col=1)
        elif (rng := info.ranges.get(entries[0])) is not None:
            fig.update_yaxes(range=list(rng), exponentformat="power", row=r, col=1)


def plot_schedules(study: optuna.Study, *, space: ScheduleSpace | None = None) -> Any:
    """Each completed trial's schedules over training, the latest highlighted, the best dashed.

    Params are read through ``space`` (default: the study's FMDSampler's, else what the
    objective stored); with a population, each outer iterate is drawn once and the best is the
    iterate with the best mean over its members.

    Args:
        study: A study whose trials suggest a :class:`~optuna_fmd.ScheduleSpace`'s params
            (e.g. with :class:`~optuna_fmd.HypergradientObjective`).
        space: The study's space, if its sampler does not hold it.

    Returns:
        A ``plotly.graph_objects.Figure`` with one row per scheduled entry, except the class
        weights (hyper ``class_weight``), which share one row (one by one in
        :func:`~optuna_fmd.visualization.plot_class_weights`).

    Example:
        >>> fig = plot_schedules(study)  # doctest: +SKIP
        >>> fig.show()  # doctest: +SKIP
    """
    import plotly.graph_objects as go  # lazily: plotly is optional
    from plotly.subplots import make_subplots

    space = space_of(study, space)
    info = _get_schedule_info(study, space)
    row_entries = _schedule_rows(info.hypers, space)
    rows = max(len(row_entries), 1)
    titles = [title for title, _ in row_entries] or None
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=titles)
    n = len(info.trials)
    for i, trial, role in draw_order(info):
        legend = True  # one legend item per trial and role
        for r, (_, entries) in enumerate(row_entries, start=1):
            for hyper in entries:
                values = trial.schedules.get(hyper)
                if values is None:
                    continue
                xs, ys = _stairs(values, info.steps)
                fade = 0.15 + 0.55 * (i + 1) / max(n, 1)
                name = (
                    f"trial {trial.number}"
                    + {
                        "other": "",
                        "latest": " (latest)",
                        "best": f" ({_best_name(info)})",
                    }[role]
                )
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        name=name,
                        legendgroup=f"{trial.number}/{role}",
                        showlegend=legend,
                        opacity=fade if role == "other" else 1.0,
                        line={
                            "width": (3 if len(entries) == 1 else 2) if role == "latest" else 2,
                            "color": {"other": "#1f77b4", "latest": "#d62728", "best": "#2ca02c"}[
                                role
                            ],
                            "dash": "dash" if role == "best" else "solid",
                        },
                        hovertemplate=f"trial {trial.number}<br>{hyper} = %{{y:.4g}}"
                        "<extra></extra>",
                    ),
                    row=r,
                    col=1,
                )
                legend = False
    _schedule_yaxes(fig, info, row_entries)
    fig.update_xaxes(
        title_text="training step" if info.steps is not None else "fraction of training",
        row=rows,
        col=1,
    )
    fig.update_layout(title="Schedules per trial", height=260 * rows + 80)
    _note(fig, info.note, middle=True)
    return fig


def plot_hypergradients(study: optuna.Study, *, space: ScheduleSpace | None = None) -> Any:
    """The hypergradient of each param over the outer steps (trials): a row per entry's
    windows (``lr_0`` ...) or family parameters (``lr_peak`` ...), one per refiner's
    corrections (``lr_delta_k``). A figure without any hypergradient says why in words.

    Args:
        study: The FMD study.
        space: The study's space, if its sampler does not hold it.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.colors  # lazily: plotly is optional
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    info = _get_hypergradient_info(study, space)
    rows = max(len(info.hypers), 1)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=info.hypers or None)
    palette = plotly.colors.qualitative.Plotly
    for r, hyper in enumerate(info.hypers, start=1):
        for k, (name, series) in enumerate(
            zip(info.labels[hyper], info.values[hyper], strict=True)
        ):
            color = palette[k % len(palette)]
            means = iterate_means(info, series)
            # the path over the outer steps: one point per iterate (its members' mean) ...
            fig.add_trace(
                go.Scatter(
                    x=means.x,
                    y=means.y,
                    mode="lines",
                    name=name,
                    legendgroup=f"{hyper}/{name}",
                    line={"color": color, "width": 1.5},
                    customdata=[", ".join(map(str, m)) for m in means.members],
                    hovertemplate=f"mean of trials %{{customdata}}<br>dL/d{name} = "
                    "%{y:.4g}<extra></extra>",
                ),
                row=r,
                col=1,
            )
            # ... and each trial's own hypergradient, side by side with its iterate's others
            fig.add_trace(
                go.Scatter(
                    x=info.numbers,
                    y=series,
                    mode="markers",
                    name=name,
                    legendgroup=f"{hyper}/{name}",
                    showlegend=False,
                    marker={"color": color, "size": 6},
                    hovertemplate=f"trial %{{x}}<br>dL/d{name} = %{{y:.4g}}<extra></extra>",
                ),
                row=r,
                col=1,
            )
        fig.add_hline(y=0.0, line={"color": "grey", "width": 1}, row=r, col=1)
    ticks = trial_ticks(info.numbers)
    fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=[str(t) for t in ticks])
    fig.update_xaxes(title_text="trial (outer step)", row=rows, col=1)
    fig.update_layout(title="Hypergradients per param", height=260 * rows + 80)
    _note(fig, info.note, middle=not info.numbers)
    return fig

"""Schedules and hypergradients of an FMD study, gathered as plain data and drawn with plotly."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..space import ScheduleSpace
from ._layout import Stack, add_note, lay_out, log_ticks, note_lines, series_colors, stack
from ._study import (
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
    "legend_name",
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
    """One trial's schedules: ``{hyper: [window values]}`` and its objective value; with a
    population, ``members`` are the trial numbers of its outer iterate (``number`` first), which
    share its schedules (``()`` outside a population)."""

    number: int
    value: float | None
    schedules: dict[str, list[float]]
    members: tuple[int, ...] = ()

    @property
    def numbers(self) -> tuple[int, ...]:
        """The trials this schedule stands for: its iterate's members, else itself."""
        return self.members or (self.number,)


class ScheduleInfo(NamedTuple):
    """Everything :func:`plot_schedules` draws.

    Attributes:
        hypers: Scheduled entries (hyperparameters or layer groups), in first-seen order.
        log: Whether each was searched on a log scale.
        steps: The episode length (from the trials' ``steps`` user attr), or ``None``.
        trials: Completed trials with a full schedule, in trial order; with a population, one
            per outer iterate (its first member: the members share the schedules).
        latest: Number of the completed trial with a schedule that finished last (by its
            completion time, then by number), or ``None`` if there is none; the schedule of
            its iterate is highlighted.
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


def _get_schedule_info(study: optuna.Study, space: ScheduleSpace | None = None) -> ScheduleInfo:
    """Gather each completed trial's window schedules, read through the study's space."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    names = StudyNames(space_of(study, space))
    hypers: list[str] = []
    log: dict[str, bool] = {}
    trials: list[TrialSchedule] = []
    members: dict[int, list[int]] = {}  # the trials of each iterate drawn
    finished: list[tuple[datetime.datetime, int]] = []
    steps: int | None = None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        schedules = names.schedules(trial.params, trial.user_attrs)
        if not schedules:
            continue
        finished.append((trial.datetime_complete or datetime.datetime.min, trial.number))
        slot = trial_iterate(trial)
        if slot is not None:  # the members of an iterate share its schedules: draw it once
            if slot[0] in members:
                members[slot[0]].append(trial.number)
                continue
            members[slot[0]] = [trial.number]
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
    # each iterate's members, now that all are known (one of them alone: no population shown)
    by_first = {m[0]: tuple(m) for m in members.values() if len(m) > 1}
    trials = [t._replace(members=by_first.get(t.number, ())) for t in trials]
    best = best_iterate(study)
    drawn = {t.number for t in trials}
    best_number = None
    if best is not None:
        best_number = next((n for n in best.trials if n in drawn), None)
    latest = max(finished)[1] if finished else None
    ranges: dict[str, tuple[float, float] | None] = {}
    for h in hypers:
        values = [v for t in trials for v in t.schedules.get(h, []) if math.isfinite(v)]
        ranges[h] = None if log.get(h) or not values else _fitted_range(values)
    note = "" if trials else "no completed trial with a schedule yet"
    label = (
        _best_label(best.value, best.trials)
        if best is not None and best_number is not None
        else ""
    )
    return ScheduleInfo(hypers, log, steps, trials, latest, best_number, label, ranges, note)


def _best_label(value: float, trials: Sequence[int]) -> str:
    """How a legend names the best iterate of a population, its mean ``value`` over its
    ``trials`` (``""``: a single best trial)."""
    if len(trials) < 2:
        return ""
    return f"best iterate (mean {value:.4g}): trials {', '.join(map(str, trials))}"


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
    then the latest (``"latest"``: the schedule of the trial that finished last), then the best
    (``"best"``, dashed), on top of everything, so that the latest line never hides it; a
    trial that is both is drawn in both roles."""
    roles = [("latest", info.latest), ("best", info.best)]
    others = [
        (i, t, "other")
        for i, t in enumerate(info.trials)
        if not any(n is not None and n in t.numbers for _, n in roles)
    ]
    top = [
        (i, t, role)
        for role, number in roles
        for i, t in enumerate(info.trials)
        if number is not None and number in t.numbers
    ]
    return others + top


def legend_name(info: ScheduleInfo, trial: TrialSchedule, role: str, newline: str = " ") -> str:
    """How a legend names ``trial`` drawn as ``role`` (see :func:`draw_order`): ``"trial 23
    (latest)"`` (the trial that finished last, whichever member of its iterate is drawn),
    ``"trial 1 (best)"`` or ``"best iterate (mean 0.114):`` ``newline`` ``trials 20, 21"``,
    ``"trial 3"`` or ``"trials 4, 5"`` (an iterate's members)."""
    if role == "latest":
        return f"trial {info.latest} (latest)"
    if role == "best":
        if info.best_label:
            return info.best_label.replace("): ", "):" + newline, 1)
        return f"trial {trial.number} (best)"
    numbers = trial.numbers
    return f"trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"


#: The colours of the schedules: the latest's, the best's and the others'.
ROLE_COLORS = {"other": "#1f77b4", "latest": "#d62728", "best": "#2ca02c"}
#: The order of the schedules' legend: the latest, the best, then one entry for the others.
LEGEND_RANKS = {"latest": 1, "best": 2, "other": 3}


def _schedule_axes(
    fig: Any, info: ScheduleInfo, rows: list[tuple[str, list[str]]], st: Stack
) -> None:
    """The bottom row's x axis title, and each row's y axis: log ticks for a log-scale entry,
    else a range fitted to its values; as many ticks as the panel holds apart."""
    fig.update_xaxes(
        title_text="training step" if info.steps is not None else "fraction of training",
        row=max(len(rows), 1),
        col=1,
    )
    for r, (_, entries) in enumerate(rows, start=1):
        if any(info.log.get(h) for h in entries):
            values = [v for t in info.trials for h in entries for v in t.schedules.get(h, [])]
            ticks = log_ticks(values, st.ticks)
            fig.update_yaxes(
                type="log",
                tickvals=ticks or None,
                ticktext=[f"{v:.3g}" for v in ticks] or None,
                row=r,
                col=1,
            )
            continue
        fig.update_yaxes(nticks=st.ticks, row=r, col=1)
        if len(entries) > 1:  # the class weights' row: fitted to all of them
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


def plot_schedules(
    study: optuna.Study, *, space: ScheduleSpace | None = None, height: int | None = None
) -> Any:
    """Each completed trial's schedules over training, the latest highlighted, the best dashed.

    Params are read through ``space`` (default: the study's FMDSampler's, else what the
    objective stored); with a population, each outer iterate is drawn once and the best is the
    iterate with the best mean over its members. The latest is the schedule of the completed
    trial that finished last. The legend names the latest and the best, and holds the other
    trials in one entry (their numbers show on hover).

    Args:
        study: A study whose trials suggest a :class:`~optuna_fmd.ScheduleSpace`'s params
            (e.g. with :class:`~optuna_fmd.HypergradientObjective`).
        space: The study's space, if its sampler does not hold it.
        height: The figure's height in pixels, its panels sharing what the title and the axes
            leave (default: a fixed height per panel).

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
    st = stack(rows, height=height)
    titles = [title for title, _ in row_entries] or None
    fig = make_subplots(
        rows=rows, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=st.spacing
    )
    lay_out(fig, "Schedules per trial", st)
    n = len(info.trials)
    shown: set[str] = set()  # one legend entry per role: the others share theirs
    for i, trial, role in draw_order(info):
        name = legend_name(info, trial, role, newline="<br>")
        key = "others" if role == "other" else f"{trial.number}/{role}"
        for r, (_, entries) in enumerate(row_entries, start=1):
            for hyper in entries:
                values = trial.schedules.get(hyper)
                if values is None:
                    continue
                xs, ys = _stairs(values, info.steps)
                line = {
                    "width": (3 if len(entries) == 1 else 2) if role == "latest" else 2,
                    "color": ROLE_COLORS[role],
                    "dash": "dash" if role == "best" else "solid",
                }
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        name="other trials (older: fainter)" if role == "other" else name,
                        legendgroup=key,
                        legendrank=LEGEND_RANKS[role],
                        showlegend=key not in shown,
                        opacity=0.15 + 0.55 * (i + 1) / max(n, 1) if role == "other" else 1.0,
                        line=line,
                        hovertemplate=_hover(trial.numbers, hyper),
                    ),
                    row=r,
                    col=1,
                )
                shown.add(key)
    _schedule_axes(fig, info, row_entries, st)
    add_note(fig, info.note, middle=True)
    return fig


def _hover(numbers: list[int] | tuple[int, ...], hyper: str) -> str:
    """A schedule's hover text: its trial (an iterate's members) and the hyper's value."""
    members = ", ".join(map(str, numbers))
    return (
        f"trial{'s' if len(numbers) > 1 else ''} {members}<br>{hyper} = %{{y:.4g}}<extra></extra>"
    )


def plot_hypergradients(
    study: optuna.Study, *, space: ScheduleSpace | None = None, height: int | None = None
) -> Any:
    """The hypergradient of each param over the outer steps (trials): a row per entry's
    windows (``lr_0`` ...) or family parameters (``lr_peak`` ...), one per refiner's
    corrections (``lr_delta_k``), each param in a colour of its own. A figure without any
    hypergradient says why in words.

    Args:
        study: The FMD study.
        space: The study's space, if its sampler does not hold it.
        height: The figure's height in pixels, its panels sharing what the title, the note and
            the axes leave (default: a fixed height per panel).

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go  # lazily: plotly is optional
    from plotly.subplots import make_subplots

    info = _get_hypergradient_info(study, space)
    rows = max(len(info.hypers), 1)
    lines = len(note_lines(info.note)) if info.numbers else 0  # an empty figure: in its middle
    st = stack(rows, note=lines, height=height)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        subplot_titles=info.hypers or None,
        vertical_spacing=st.spacing,
    )
    lay_out(fig, "Hypergradients per param", st)
    colors = series_colors([name for h in info.hypers for name in info.labels[h]])
    for r, hyper in enumerate(info.hypers, start=1):
        for name, series in zip(info.labels[hyper], info.values[hyper], strict=True):
            means = iterate_means(info, series)
            # the path over the outer steps: one point per iterate (its members' mean) ...
            fig.add_trace(
                go.Scatter(
                    x=means.x,
                    y=means.y,
                    mode="lines",
                    name=name,
                    legendgroup=f"{hyper}/{name}",
                    line={"color": colors[name], "width": 1.5},
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
                    marker={"color": colors[name], "size": 6},
                    hovertemplate=f"trial %{{x}}<br>dL/d{name} = %{{y:.4g}}<extra></extra>",
                ),
                row=r,
                col=1,
            )
        fig.add_hline(y=0.0, line={"color": "grey", "width": 1}, row=r, col=1)
    ticks = trial_ticks(info.numbers)
    fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=[str(t) for t in ticks])
    fig.update_xaxes(title_text="trial (outer step)", row=rows, col=1)
    fig.update_yaxes(nticks=st.ticks)
    add_note(fig, info.note, middle=not info.numbers)
    return fig

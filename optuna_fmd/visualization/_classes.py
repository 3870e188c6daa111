"""Class-weight schedules of an FMD study and what they did to each class, drawn with plotly.

On an imbalanced task the space holds one weight schedule per class (entries whose hyper is
``class_weight``, e.g. :func:`optuna_fmd.space.imbalanced_space`'s ``cw_<c>``); this figure
shows them all in one panel, head class to tail, and the per-class validation accuracy the
objective stored (``user_attrs["val_class_accuracy"]``) beside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .._imbalanced import COUNTS_ATTR, matched_classes
from ..space import ScheduleSpace
from ._layout import add_note
from ._schedules import (
    TrialSchedule,
    _fitted_range,
    _get_schedule_info,
    _stairs,
    class_weight_entries,
)
from ._study import best_iterate, space_of, trial_iterate

if TYPE_CHECKING:
    import optuna

__all__ = ["ClassWeightInfo", "plot_class_weights"]

#: The trial user attr of the validation accuracy per class.
ACCURACY_ATTR = "val_class_accuracy"
#: Where along the sequential colour scale the head class (0) and the tail class sit.
SCALE_SPAN = 0.85
START_COLOR = "#b0b0b0"
BEST_COLOR = "#2ca02c"


class ClassWeightInfo(NamedTuple):
    """Everything :func:`plot_class_weights` draws.

    Attributes:
        entries: The space's class-weight entries, head class first: by training examples
            when the study knows them (study user attr ``class_counts``), else in entry order.
        labels: Each entry in words (``"class 3 (60 examples)"``; ``"class 3"`` without the
            counts; ``"classes [5-9]"`` for a group).
        steps: The episode length (from the trials' ``steps`` user attr), or ``None``.
        best: The best iterate's schedules (its first trial), ``None`` without one.
        start: The first completed trial's schedules (``None``: none, or it is the best).
        best_label: The best in words (``"best (trial 5)"``, ``"best iterate (mean of trials
            6, 7)"``).
        start_label: The start in words (``"start (trial 0)"``).
        range: A y range fitted to the drawn weights, ``None`` without any.
        classes: The classes of the accuracy panel (indices), head first as ``entries``.
        best_accuracy: Validation accuracy of each of ``classes``, the mean over the best
            iterate's members (NaN where not recorded); ``None`` where none is recorded.
        start_accuracy: The same for the start (its iterate's members).
        note: Why the figure is empty, in words (``""``: it is not).
        accuracy_note: Why the accuracy panel is empty, in words (``""``: it is not).
        by_count: Whether ``classes`` are in the order of their training examples.
    """

    entries: list[str]
    labels: list[str]
    steps: int | None
    best: TrialSchedule | None
    start: TrialSchedule | None
    best_label: str
    start_label: str
    range: tuple[float, float] | None
    classes: list[int]
    best_accuracy: list[float] | None
    start_accuracy: list[float] | None
    note: str = ""
    accuracy_note: str = ""
    by_count: bool = False


def _counts(study: optuna.Study) -> list[int] | None:
    counts = study.user_attrs.get(COUNTS_ATTR)
    if isinstance(counts, list) and counts and all(_count(c) for c in counts):
        return [int(c) for c in counts]
    return None


def _count(c: Any) -> bool:
    return isinstance(c, (int, float)) and not isinstance(c, bool) and c >= 0


def _label(patterns: Sequence[str], count: int | None) -> str:
    if tuple(patterns) == ("*",):
        words = "all classes"
    elif len(patterns) == 1 and patterns[0].isdigit():
        words = f"class {patterns[0]}"
    else:
        words = f"classes {', '.join(patterns)}"
    return words if count is None else f"{words} ({count} examples)"


def _accuracy(
    trials: Mapping[int, optuna.trial.FrozenTrial], numbers: Sequence[int]
) -> list[float] | None:
    """The mean per-class validation accuracy of trials ``numbers`` (``None``: none stored)."""
    rows = []
    for number in numbers:
        acc = trials[number].user_attrs.get(ACCURACY_ATTR) if number in trials else None
        if isinstance(acc, list) and acc:
            rows.append([float(a) if _count(a) else math.nan for a in acc])
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    out = []
    for column in zip(*rows, strict=True):
        finite = [a for a in column if math.isfinite(a)]
        out.append(sum(finite) / len(finite) if finite else math.nan)
    return out


def _words(kind: str, numbers: Sequence[int]) -> str:
    """``"best (trial 5)"``, ``"start (mean of trials 0, 1)"``."""
    if len(numbers) == 1:
        return f"{kind} (trial {numbers[0]})"
    return f"{kind} (mean of trials {', '.join(map(str, numbers))})"


def _members(trials: Mapping[int, optuna.trial.FrozenTrial], number: int) -> list[int]:
    """The trials of ``number``'s outer iterate (``[number]`` outside a population)."""
    own = trial_iterate(trials[number])
    if own is None:
        return [number]
    return [n for n, t in trials.items() if (trial_iterate(t) or (-1,))[0] == own[0]]


def _get_class_weight_info(
    study: optuna.Study, space: ScheduleSpace | None = None
) -> ClassWeightInfo:
    """Gather the best and the start's class-weight schedules and per-class accuracies."""
    from optuna.trial import TrialState

    space = space_of(study, space)
    patterns = class_weight_entries(space)
    empty = ClassWeightInfo([], [], None, None, None, "", "", None, [], None, None)
    if not patterns:
        why = (
            "no class-weight schedule in this study's space"
            if space is not None
            else "no class-weight schedule found: the study's space is not at hand (pass space=)"
        )
        return empty._replace(note=why)
    counts = _counts(study)
    sizes = {
        e: None if counts is None else sum(counts[c] for c in matched_classes(p, len(counts)))
        for e, p in patterns.items()
    }
    entries = sorted(patterns, key=lambda e: -(sizes[e] or 0))  # stable: entry order ties
    labels = [_label(patterns[e], sizes[e]) for e in entries]
    info = _get_schedule_info(study, space)
    drawn = {t.number: t for t in info.trials}
    best = drawn.get(info.best) if info.best is not None else None
    start = info.trials[0] if info.trials else None
    if best is None or start is None:
        note = info.note or "no completed trial with a finite value yet"
        return empty._replace(entries=entries, labels=labels, steps=info.steps, note=note)
    done = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    iterate = best_iterate(study)
    best_numbers = list(iterate.trials) if iterate is not None else [best.number]
    start_numbers = _members(done, start.number)
    best_label = _words("best iterate" if len(best_numbers) > 1 else "best", best_numbers)
    if start.number == best.number:
        best_label = best_label[:-1] + ", the start)"
    start_label = _words("start", start_numbers)
    values = [
        v
        for t in (best, start)
        for e in entries
        for v in t.schedules.get(e, [])
        if math.isfinite(v)
    ]
    best_acc = _accuracy(done, best_numbers)
    start_acc = None if start.number == best.number else _accuracy(done, start_numbers)
    n_classes = len(best_acc) if best_acc is not None else 0
    classes = list(range(n_classes))
    by_count = counts is not None and len(counts) == n_classes
    if by_count:
        assert counts is not None
        classes.sort(key=lambda c: -counts[c])
    if start_acc is not None and len(start_acc) != n_classes:
        start_acc = None
    return ClassWeightInfo(
        entries=entries,
        labels=labels,
        steps=info.steps,
        best=best,
        start=None if start.number == best.number else start,
        best_label=best_label,
        start_label=start_label,
        range=_fitted_range(values) if values else None,
        classes=classes,
        best_accuracy=None if best_acc is None else [best_acc[c] for c in classes],
        start_accuracy=None if start_acc is None else [start_acc[c] for c in classes],
        accuracy_note="" if best_acc is not None else "per-class accuracy not recorded",
        by_count=by_count,
    )


def class_colors(n: int) -> list[float]:
    """Positions along a sequential colour scale of ``n`` entries, head (0) to tail."""
    return [SCALE_SPAN * i / max(n - 1, 1) for i in range(n)]


def _draw_weights(fig: Any, info: ClassWeightInfo) -> None:
    """Left panel: a line per class-weight entry, the best solid, the start dashed."""
    import plotly.graph_objects as go  # lazily: plotly is optional
    from plotly.colors import sample_colorscale

    colors = sample_colorscale("Viridis", class_colors(len(info.entries)))
    for entry, label, color in zip(info.entries, info.labels, colors, strict=True):
        for trial, best in ((info.start, False), (info.best, True)):
            values = None if trial is None else trial.schedules.get(entry)
            if trial is None or values is None:
                continue
            xs, ys = _stairs(values, info.steps)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    name=label,
                    legendgroup=entry,
                    showlegend=best,
                    opacity=1.0 if best else 0.7,
                    line={
                        "color": color,
                        "width": 2.2 if best else 1.1,
                        "dash": None if best else "dash",
                    },
                    hovertemplate=f"{label}<br>{'best' if best else 'start'}: trial "
                    f"{trial.number}<br>weight %{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=1,
            )
    if info.range is not None:
        fig.update_yaxes(range=list(info.range), row=1, col=1)
    fig.update_yaxes(title_text="class weight", row=1, col=1)
    fig.update_xaxes(
        title_text="training step" if info.steps is not None else "fraction of training",
        row=1,
        col=1,
    )


def _draw_accuracy(fig: Any, info: ClassWeightInfo) -> None:
    """Right panel: grouped bars of each class's validation accuracy, start and best."""
    import plotly.graph_objects as go  # lazily: plotly is optional

    ticks = [str(c) for c in info.classes]
    for label, accuracy, color in (
        (info.start_label, info.start_accuracy, START_COLOR),
        (info.best_label, info.best_accuracy, BEST_COLOR),
    ):
        if accuracy is None:
            continue
        fig.add_trace(
            go.Bar(
                x=ticks,
                y=accuracy,
                name=label,
                marker_color=color,
                legend="legend2",
                hovertemplate=f"class %{{x}}<br>{label}<br>accuracy %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    if info.best_accuracy is None:
        fig.add_annotation(
            text=info.accuracy_note,
            xref="x2 domain",
            yref="y2 domain",
            x=0.5,
            y=0.5,
            showarrow=False,
            font={"color": "#555", "size": 13},
        )
        fig.update_xaxes(visible=False, row=1, col=2)
        fig.update_yaxes(visible=False, row=1, col=2)
    else:
        fig.update_yaxes(range=[0.0, 1.18], tickvals=[0, 0.25, 0.5, 0.75, 1.0], row=1, col=2)
        fig.update_yaxes(title_text="validation accuracy", row=1, col=2)
        fig.update_xaxes(
            title_text="class (head to tail)" if info.by_count else "class",
            type="category",
            row=1,
            col=2,
        )


def plot_class_weights(study: optuna.Study, *, space: ScheduleSpace | None = None) -> Any:
    """The class-weight schedules of the best iterate against the start, and each class's
    validation accuracy under both.

    Left, one line per class-weight entry over training, coloured from the head class (most
    training examples; the study user attr ``class_counts`` gives them, else entry order) to
    the tail: the best iterate's schedule solid, the start's (the first trial's) thin and
    dashed. Right, grouped bars of the validation accuracy per class of the best iterate (the
    mean over its members) and of the start, from ``user_attrs["val_class_accuracy"]``. A study
    whose space holds no class weight gets a figure that says so.

    Args:
        study: A study over a space with class weights (entries whose hyper is
            ``class_weight``, e.g. :func:`optuna_fmd.space.imbalanced_space`).
        space: The study's space, if its sampler does not hold it.

    Returns:
        A ``plotly.graph_objects.Figure``.

    Example:
        >>> study.set_user_attr("class_counts", task.class_counts(0))  # doctest: +SKIP
        >>> plot_class_weights(study).show()  # doctest: +SKIP
    """
    import plotly.graph_objects as go  # lazily: plotly is optional
    from plotly.subplots import make_subplots

    info = _get_class_weight_info(study, space)
    if info.best is None:
        fig = go.Figure()
        fig.update_layout(title="Class weights", height=360)
        add_note(fig, info.note, middle=True)
        return fig
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.56, 0.44],
        horizontal_spacing=0.09,
        subplot_titles=("Class weight over training", "Validation accuracy per class"),
    )
    _draw_weights(fig, info)
    _draw_accuracy(fig, info)
    legend_title = f"solid: {info.best_label}"
    if info.start is not None:
        legend_title += f"<br>dashed: {info.start_label}"
    right = fig.layout.xaxis2.domain
    fig.update_layout(
        title="Class weights: the best iterate against the start",
        height=440,
        barmode="group",
        legend={"title": {"text": legend_title}, "tracegroupgap": 0},
        legend2={
            "orientation": "h",
            "x": right[1],
            "xanchor": "right",
            "y": 1.0,
            "yanchor": "top",
            "bgcolor": "rgba(255,255,255,0.7)",
        },
    )
    return fig

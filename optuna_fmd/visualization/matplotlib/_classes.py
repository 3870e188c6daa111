"""Class-weight schedules and per-class accuracy of an FMD study (matplotlib), from the plotly
plot's data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._classes import (
    BEST_COLOR,
    START_COLOR,
    ClassWeightInfo,
    _get_class_weight_info,
    class_colors,
)
from ._axes import empty, new_axes, result

if TYPE_CHECKING:
    import optuna

    from ...space import ScheduleSpace

__all__ = ["plot_class_weights"]

TITLE = "Class weights: the best iterate against the start"


def _edges(windows: int, steps: int | None) -> list[float]:
    total = float(steps) if steps is not None else 1.0
    return [k * total / windows for k in range(windows + 1)]


def _pair(*, pyplot: bool) -> Any:
    """Two axes side by side (schedules, accuracies), styled as :func:`new_axes` styles them."""
    size = (11.0, 4.4)
    if pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=size, layout="constrained")
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=[1.3, 1.0])
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return axes


def _draw_class_weights(info: ClassWeightInfo, axes: Any) -> None:
    """The schedules (best solid, start dashed, head to tail along viridis) and the bars."""
    import matplotlib
    import numpy as np

    left, right = axes
    left.figure.suptitle(TITLE)
    cmap = matplotlib.colormaps["viridis"]
    for entry, label, pos in zip(
        info.entries, info.labels, class_colors(len(info.entries)), strict=True
    ):
        for trial, best in ((info.start, False), (info.best, True)):
            values = None if trial is None else trial.schedules.get(entry)
            if values is None:
                continue
            left.stairs(
                values,
                _edges(len(values), info.steps),
                baseline=None,
                color=cmap(pos),
                label=label if best else f"_{label} (start)",  # the start: out of the legend
                linewidth=2.0 if best else 1.0,
                linestyle="-" if best else "--",
                alpha=1.0 if best else 0.75,
            )
    title = f"solid: {info.best_label}"
    if info.start is not None:
        title += f"\ndashed: {info.start_label}"
    left.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title=title,
        fontsize="small",
        title_fontsize="small",
        frameon=False,
        alignment="left",
        ncol=1 if len(info.entries) <= 14 else 2,
    )
    left.set_title("Class weight over training", fontsize="medium")
    left.set_ylabel("class weight")
    left.set_xlabel("training step" if info.steps is not None else "fraction of training")
    left.set_xlim(0.0, _edges(1, info.steps)[-1])
    if info.range is not None:
        left.set_ylim(*info.range)
    right.set_title("Validation accuracy per class", fontsize="medium")
    if info.best_accuracy is None:
        empty(right, info.accuracy_note)
        right.set_xticks([])
        right.set_yticks([])
        return
    x = np.arange(len(info.classes))
    bars = [(info.start_label, info.start_accuracy, START_COLOR)]
    bars.append((info.best_label, info.best_accuracy, BEST_COLOR))
    drawn = [(label, acc, color) for label, acc, color in bars if acc is not None]
    width = 0.8 / len(drawn)
    for i, (label, acc, color) in enumerate(drawn):
        right.bar(x + (i - (len(drawn) - 1) / 2) * width, acc, width, color=color, label=label)
    right.set_xticks(x, [str(c) for c in info.classes])
    right.set_xlabel("class (head to tail)" if info.by_count else "class")
    right.set_ylabel("validation accuracy")
    right.set_ylim(0.0, 1.18)
    right.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
    right.grid(False, axis="x")
    right.legend(loc="upper center", ncol=len(drawn), fontsize="small", frameon=False)


def plot_class_weights(study: optuna.Study, *, space: ScheduleSpace | None = None) -> Any:
    """The class-weight schedules of the best iterate against the start, and each class's
    validation accuracy under both.

    The matplotlib twin of :func:`optuna_fmd.visualization.plot_class_weights`: one line per
    class-weight entry coloured from the head class to the tail (viridis), the best iterate's
    solid and the start's dashed; beside them, grouped bars of the per-class validation
    accuracy.

    Args:
        study: A study over a space with class weights (entries whose hyper is
            ``class_weight``).
        space: The study's space, if its sampler does not hold it.

    Returns:
        A ``numpy.ndarray`` of two ``matplotlib.axes.Axes`` (schedules, accuracies), or one
        ``Axes`` with a note when there is nothing to draw.

    Example:
        >>> axes = plot_class_weights(study)  # doctest: +SKIP
        >>> axes[0].figure.savefig("classes.png")  # doctest: +SKIP
    """
    return result(_class_weights_axes(study, pyplot=True, space=space))


def _class_weights_axes(
    study: optuna.Study, *, pyplot: bool, space: ScheduleSpace | None = None
) -> Any:
    info = _get_class_weight_info(study, space)
    if info.best is None:
        axes = new_axes(1, pyplot=pyplot, height=3.0)
        axes[0].set_title("Class weights")
        empty(axes[0], info.note)
        axes[0].set_xticks([])
        axes[0].set_yticks([])
        return axes
    axes = _pair(pyplot=pyplot)
    _draw_class_weights(info, axes)
    return axes

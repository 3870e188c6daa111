"""Schedules and hypergradients of an FMD study (matplotlib), from the plotly plots' data."""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any

from .._layout import note_lines, series_colors
from .._schedules import (
    HypergradientInfo,
    ScheduleInfo,
    _get_hypergradient_info,
    _get_schedule_info,
    draw_order,
    iterate_means,
    legend_name,
)
from ._axes import BEST_COLOR, LATEST_COLOR, empty, new_axes, result

if TYPE_CHECKING:
    import optuna

    from ...space import ScheduleSpace

__all__ = ["plot_hypergradients", "plot_schedules"]

TITLE = "Hypergradients per param"


def _edges(windows: int, steps: int | None) -> list[float]:
    total = float(steps) if steps is not None else 1.0
    return [k * total / windows for k in range(windows + 1)]


def _draw_schedules(info: ScheduleInfo, axes: Any, *, title: str = "Schedules per trial") -> None:
    """Step-shaped schedules over training, coloured by trial order, latest and best on top."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import MaxNLocator

    fig = axes[0].figure
    fig.suptitle(title)
    if not info.trials:
        empty(axes[0], info.note or "no completed trial with a schedule yet")
        return
    cmap = matplotlib.colormaps["viridis"]
    numbers = [t.number for t in info.trials]
    norm = Normalize(vmin=min(numbers), vmax=max(max(numbers), min(numbers) + 1))
    styles: dict[str, dict[str, Any]] = {  # the best dashed, above the latest: never hidden
        "latest": {"color": LATEST_COLOR, "linewidth": 2.6, "zorder": 4},
        "best": {"color": BEST_COLOR, "linewidth": 1.8, "linestyle": "--", "zorder": 5},
    }
    for ax, hyper in zip(axes, info.hypers, strict=True):
        for _, t, role in draw_order(info):
            values = t.schedules.get(hyper)
            if values is None:
                continue
            edges = _edges(len(values), info.steps)
            label = legend_name(info, t, role)
            if role == "other":  # out of the legend: the colour bar tells the trials apart
                style = {"color": cmap(norm(t.number)), "linewidth": 1.2, "alpha": 0.85}
                ax.stairs(values, edges, baseline=None, label=f"_{label}", **style)
            else:
                ax.stairs(values, edges, baseline=None, label=label, **styles[role])
        ax.use_sticky_edges = False  # room above and below the highest and lowest schedule
        ax.margins(y=0.08)
        if info.log.get(hyper):
            ax.set_yscale("log")
        elif (rng := info.ranges.get(hyper)) is not None:
            ax.set_ylim(*rng)  # fitted to the values: a flat 5e-4 reads as 5e-4, not as 0
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        ax.set_ylabel(hyper)
    axes[-1].set_xlabel("training step" if info.steps is not None else "fraction of training")
    axes[-1].set_xlim(0.0, _edges(1, info.steps)[-1])
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # under the x axis: clear of the title and of the schedules
        fig.legend(handles, labels, loc="outside lower center", ncol=len(handles))
    if len(info.trials) > 1:
        bar = fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), label="trial", pad=0.01
        )
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()


def _draw_hypergradients(info: HypergradientInfo, axes: Any) -> None:
    """One line per param over the outer steps, each param in a colour of its own
    (:func:`~optuna_fmd.visualization._layout.series_colors`, as the plotly figure's), around
    a zero line."""
    if not info.numbers:
        axes[0].set_title(TITLE)
        empty(axes[0], textwrap.fill(info.note or "no trial with a hypergradient yet", 70))
        axes[0].set_xticks([])
        axes[0].set_yticks([])
        return
    if info.note:  # the title above the figure, the note (grey) above the first panel
        axes[0].figure.suptitle(TITLE)
        note = "\n".join(note_lines(info.note))
        axes[0].set_title(note, fontsize="small", color="grey", loc="left")
    else:
        axes[0].set_title(TITLE)
    colors = series_colors([name for h in info.hypers for name in info.labels[h]])
    for ax, hyper in zip(axes, info.hypers, strict=True):
        series = info.values[hyper]
        for name, ys in zip(info.labels[hyper], series, strict=True):
            color = colors[name]
            points = [(n, y) for n, y in zip(info.numbers, ys, strict=True) if not math.isnan(y)]
            means = iterate_means(info, ys)  # the path: one point per iterate, not per member
            ax.plot(means.x, means.y, linewidth=1.4, color=color, label=name)
            ax.plot(
                [n for n, _ in points],
                [y for _, y in points],
                marker="o",
                markersize=3,
                linestyle="none",
                color=color,
            )
        ax.axhline(0.0, color="grey", linewidth=0.8, zorder=0)
        ax.set_ylabel(f"dL/d{hyper}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if len(series) <= 8 else 2)
    axes[-1].set_xlabel("trial (outer step)")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)


def plot_schedules(study: optuna.Study, *, space: ScheduleSpace | None = None) -> Any:
    """Each completed trial's schedules over training, coloured by trial order.

    The matplotlib twin of :func:`optuna_fmd.visualization.plot_schedules`: step-shaped window
    schedules over the training steps, log axes for log-scale hyperparameters, the latest outer
    iterate in red and the best trial dashed.

    Args:
        study: A study whose trials suggest a :class:`~optuna_fmd.ScheduleSpace`'s params.
        space: The study's space, if its sampler does not hold it.

    Returns:
        A ``matplotlib.axes.Axes`` for one hyperparameter, otherwise a ``numpy.ndarray`` of them
        (one row per hyperparameter).

    Example:
        >>> axes = plot_schedules(study)  # doctest: +SKIP
    """
    return result(_schedules_axes(_get_schedule_info(study, space), pyplot=True))


def plot_hypergradients(study: optuna.Study, *, space: ScheduleSpace | None = None) -> Any:
    """The hypergradient of each param over the outer steps, a row per hyper (windows or
    family parameters) and one per refiner's corrections.

    The matplotlib twin of :func:`optuna_fmd.visualization.plot_hypergradients`.

    Returns:
        A ``matplotlib.axes.Axes`` for one hyperparameter, otherwise a ``numpy.ndarray`` of them.
    """
    return result(_hypergradients_axes(study, pyplot=True, space=space))


def _schedules_axes(info: ScheduleInfo, *, pyplot: bool, title: str | None = None) -> Any:
    axes = new_axes(max(len(info.hypers), 1), pyplot=pyplot)
    _draw_schedules(info, axes, **({} if title is None else {"title": title}))
    return axes


def _hypergradients_axes(
    study: optuna.Study, *, pyplot: bool, space: ScheduleSpace | None = None
) -> Any:
    info = _get_hypergradient_info(study, space)
    axes = new_axes(max(len(info.hypers), 1), pyplot=pyplot)
    _draw_hypergradients(info, axes)
    return axes

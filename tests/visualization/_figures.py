"""Layout numbers read from plotly figure objects: panels, ticks, gaps and legends in pixels."""

from __future__ import annotations

import itertools
from typing import Any

from optuna_fmd.visualization._layout import LEGEND_ENTRY, LEGEND_LINE, ROW_TITLE, TICK_SPACING


def plot_px(fig: Any) -> float:
    """The height of the plot area (all panels and the gaps between them), in pixels."""
    return float(fig.layout.height - fig.layout.margin.t - fig.layout.margin.b)


def y_axes(fig: Any) -> list[Any]:
    """The figure's y axes, top panel first."""
    axes = [fig.layout[k] for k in fig.layout if k.startswith("yaxis")]
    return sorted(axes, key=lambda a: -a.domain[1])


def check_panels(fig: Any) -> None:
    """Each panel's y ticks (its tick values, else its most ticks) about ``TICK_SPACING``
    pixels apart or more, two at the least; between two panels room for the lower one's title
    and not much more."""
    plot = plot_px(fig)
    axes = y_axes(fig)
    for axis in axes:
        panel = (axis.domain[1] - axis.domain[0]) * plot
        ticks = len(axis.tickvals) if axis.tickvals is not None else axis.nticks
        most = max(2, int(panel // TICK_SPACING))  # two at the least, however small
        assert ticks is not None and 2 <= ticks <= most, (ticks, panel)
    for upper, lower in itertools.pairwise(axes):
        gap = (upper.domain[0] - lower.domain[1]) * plot
        assert ROW_TITLE - 1 <= gap <= ROW_TITLE + 10, gap


def legend_entries(fig: Any) -> list[Any]:
    """The traces the legend shows an entry for, in the legend's order (by rank, then as
    drawn)."""
    shown = [t for t in fig.data if t.showlegend is not False]
    return sorted(shown, key=lambda t: 1000 if t.legendrank is None else t.legendrank)


def legend_px(fig: Any) -> float:
    """The height of the legend's entries, in pixels: a line each, more for a name of several
    lines, and the gap between two groups."""
    entries = legend_entries(fig)
    lines = sum(t.name.count("<br>") for t in entries)
    gap = fig.layout.legend.tracegroupgap
    gaps = (len(entries) - 1) * (10 if gap is None else gap)
    return len(entries) * LEGEND_ENTRY + lines * LEGEND_LINE + gaps

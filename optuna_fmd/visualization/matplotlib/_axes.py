"""Figures and axes shared by the matplotlib plots (with or without pyplot)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_STYLE: dict[str, Any] = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": "small",
    "legend.frameon": False,
}

#: The latest outer iterate and the best trial stand out from the colormap of earlier trials.
LATEST_COLOR = "#d62728"
BEST_COLOR = "black"


def new_axes(rows: int, *, pyplot: bool, height: float = 2.6, width: float = 8.0) -> Any:
    """``rows`` axes stacked over a shared x axis, as an array of shape ``(rows,)``.

    With ``pyplot=False`` the figure is not registered with pyplot (for files written in the
    background, e.g. by a study callback, where no figure must be left open).
    """
    import matplotlib

    size = (width, height * rows + 0.8)
    with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]
        if pyplot:
            import matplotlib.pyplot as plt

            _, axes = plt.subplots(
                rows, 1, sharex=True, squeeze=False, figsize=size, layout="constrained"
            )
        else:
            from matplotlib.figure import Figure

            fig = Figure(figsize=size, layout="constrained")
            axes = fig.subplots(rows, 1, sharex=True, squeeze=False)
        for ax in axes[:, 0]:
            # rc_context only applies while the axes are made; keep the look afterwards too.
            ax.grid(True, alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
    return axes[:, 0]


def result(axes: Any) -> Any:
    """One ``Axes`` for a single row, otherwise the array (Optuna's convention)."""
    return axes[0] if len(axes) == 1 else axes


def empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")


def figure_of(axes: Any) -> Figure:
    """The figure behind an ``Axes`` or an array of them."""
    import numpy as np

    return np.atleast_1d(axes).flat[0].figure

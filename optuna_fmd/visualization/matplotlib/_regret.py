"""Best value so far against wall-clock time, for several studies (matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._regret import RegretCurve, _get_regret_info, _time_label
from ._axes import empty, new_axes

if TYPE_CHECKING:
    import optuna

__all__ = ["plot_regret"]


def _draw_regret(curves: Sequence[RegretCurve], ax: Any, time_attr: str | None = None) -> None:
    drawn = 0
    for curve in curves:
        if not curve.seconds:
            ax.plot([], [], label=f"{curve.name} (no completed trial)")
            continue
        ax.step(
            curve.seconds,
            curve.best,
            where="post",
            marker="o",
            markersize=3,
            linewidth=1.8,
            label=curve.name,
        )
        drawn += sum(1 for b in curve.best if not math.isnan(b))
    if not drawn:
        empty(ax, "no completed trial with a finite value")
    ax.set_title("Best value vs wall-clock time" if time_attr is None else "Best value vs time")
    ax.set_xlabel(_time_label(time_attr))
    ax.set_ylabel("best value")
    if curves:
        ax.legend(loc="upper right")


def plot_regret(
    studies: optuna.Study | Sequence[optuna.Study], *, time_attr: str | None = None
) -> Any:
    """Best validation loss against wall-clock seconds, one step-shaped line per study.

    The matplotlib twin of :func:`optuna_fmd.visualization.plot_regret`, from the same data.

    Args:
        studies: One study or several (e.g. an FMD study and a TPE study on the same space).
        time_attr: Plot against this trial user attribute instead of wall-clock time.

    Returns:
        A ``matplotlib.axes.Axes``.

    Example:
        >>> ax = plot_regret([fmd_study, tpe_study])  # doctest: +SKIP
        >>> ax.figure.savefig("regret.png")  # doctest: +SKIP
    """
    return _regret_axes(studies, pyplot=True, time_attr=time_attr)


def _regret_axes(
    studies: optuna.Study | Sequence[optuna.Study], *, pyplot: bool, time_attr: str | None = None
) -> Any:
    import optuna

    if isinstance(studies, optuna.Study):
        studies = [studies]
    (ax,) = new_axes(1, pyplot=pyplot, height=4.2)
    _draw_regret(_get_regret_info(studies, time_attr), ax, time_attr)
    return ax

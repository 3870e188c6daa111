"""Matplotlib twins of :mod:`optuna_fmd.visualization`: the same data, drawn as static figures.

Each function returns matplotlib ``Axes`` (an array of them for one row per hyperparameter), as
:mod:`optuna.visualization.matplotlib` does; save with ``ax.figure.savefig("plot.png")``.
"""

from ._classes import plot_class_weights
from ._regret import plot_regret
from ._schedules import plot_hypergradients, plot_schedules

__all__ = ["plot_class_weights", "plot_hypergradients", "plot_regret", "plot_schedules"]

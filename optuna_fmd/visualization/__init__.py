"""Plots of FMD studies: the schedules each trial tried and the hypergradients that moved them
(and, on an imbalanced task, the class weights and what they did to each class).

Plotly figures here, matplotlib twins in :mod:`optuna_fmd.visualization.matplotlib`;
:class:`DashboardCallback` shows a running study in optuna-dashboard and :func:`write_report`
writes a self-contained HTML report.
"""

from ._classes import plot_class_weights
from ._dashboard import DashboardCallback, save_best_note
from ._regret import plot_regret
from ._report import write_report
from ._schedules import plot_hypergradients, plot_schedules
from ._study import search_events

__all__ = [
    "DashboardCallback",
    "plot_class_weights",
    "plot_hypergradients",
    "plot_regret",
    "plot_schedules",
    "save_best_note",
    "search_events",
    "write_report",
]

"""Plots of FMD studies: the schedules each trial tried and the hypergradients that moved them."""

from ._regret import plot_regret
from ._schedules import plot_hypergradients, plot_schedules

__all__ = ["plot_hypergradients", "plot_regret", "plot_schedules"]

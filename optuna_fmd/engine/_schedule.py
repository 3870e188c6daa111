"""Shared hyperparameter schedules: K values per hyperparameter, each held over a window of steps.

Step ``t`` (0-based) of a ``T``-step run uses window ``floor(t * K / T)`` of a ``K``-window
schedule (Micaelli & Storkey, NeurIPS 2021, "hyperparameter sharing").
"""

from __future__ import annotations

__all__ = ["window_index", "window_start"]


def window_index(step: int, steps: int, windows: int) -> int:
    """The window used at 0-based ``step`` of a ``steps``-long run of ``windows`` windows."""
    return (step * windows) // steps


def window_start(window: int, steps: int, windows: int) -> int:
    """The first step that uses ``window``: the smallest t with floor(t * K / T) == window."""
    return -((-window * steps) // windows)  # ceil(window * steps / windows)

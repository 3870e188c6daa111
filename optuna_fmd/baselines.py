"""Hand-tuned baseline schedules as window schedules: ``constant``, ``step_decay``, ``cosine``.

Each function returns K window values for :func:`optuna_fmd.run_episode` or
:func:`optuna_fmd.evaluate_schedule`: the value of window k is the continuous schedule at the
window's midpoint, training fraction ``u = (k + 0.5) / K``. Because step t of T uses window
``floor(t * K / T)``, the same list stretches over any horizon.

Example:
    >>> from optuna_fmd import baselines
    >>> baselines.step_decay(0.1, 4)
    [0.1, 0.1, 0.010000000000000002, 0.0010000000000000002]
    >>> [round(v, 4) for v in baselines.cosine(0.1, 4)]
    [0.0962, 0.0691, 0.0309, 0.0038]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

__all__ = ["constant", "cosine", "midpoints", "step_decay"]


def _check_windows(windows: object) -> int:
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise ValueError(f"`windows` must be a positive int, but got {windows!r}.")
    return windows


def _check_finite(arg: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{arg}` must be a finite float, but got {value!r}.")
    return float(value)


def midpoints(windows: int) -> list[float]:
    """Training fraction at the middle of each of ``windows`` windows: ``(k + 0.5) / K``."""
    k = _check_windows(windows)
    return [(i + 0.5) / k for i in range(k)]


def constant(value: float, windows: int) -> list[float]:
    """The same ``value`` in each of ``windows`` windows.

    Args:
        value: The constant value.
        windows: Number of windows K.
    """
    v = _check_finite("value", value)
    return [v] * _check_windows(windows)


def step_decay(
    value: float,
    windows: int,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> list[float]:
    """``value``, multiplied by ``gamma`` at each milestone (like ``MultiStepLR``).

    Args:
        value: The initial value.
        windows: Number of windows K.
        milestones: Increasing training fractions in (0, 1) where the value is multiplied by
            ``gamma`` (default: at half and three quarters of training).
        gamma: The factor applied at each milestone (positive).

    Returns:
        K values; window k gets ``value * gamma ** (number of milestones <= its midpoint)``.
    """
    v = _check_finite("value", value)
    g = _check_finite("gamma", gamma)
    if g <= 0:
        raise ValueError(f"`gamma` must be positive, but got {gamma!r}.")
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise TypeError(f"`milestones` must be a sequence of floats, but got {milestones!r}.")
    ms = [_check_finite("milestones", m) for m in milestones]
    if any(not 0 < m < 1 for m in ms):
        raise ValueError(f"`milestones` must lie in (0, 1), but got {list(milestones)!r}.")
    if any(b <= a for a, b in itertools.pairwise(ms)):
        raise ValueError(
            f"`milestones` must be strictly increasing, but got {list(milestones)!r}."
        )
    return [v * g ** sum(m <= u for m in ms) for u in midpoints(windows)]


def cosine(peak: float, windows: int, warmup: float = 0.0, final: float = 0.0) -> list[float]:
    """Linear warm-up from 0 to ``peak``, then cosine annealing from ``peak`` to ``final``.

    Args:
        peak: The value at the end of the warm-up (the largest value when ``final <= peak``).
        windows: Number of windows K.
        warmup: Training fraction in [0, 1) spent warming up linearly from 0 (default none).
        final: The value the cosine reaches at the end of training.

    Returns:
        K values, the schedule at each window's midpoint ``u``: ``peak * u / warmup`` during the
        warm-up, else ``final + (peak - final) * (1 + cos(pi * (u - warmup) / (1 - warmup))) / 2``.
    """
    p = _check_finite("peak", peak)
    f = _check_finite("final", final)
    w = _check_finite("warmup", warmup)
    if not 0 <= w < 1:
        raise ValueError(f"`warmup` must lie in [0, 1), but got {warmup!r}.")
    out = []
    for u in midpoints(windows):
        if u < w:
            out.append(p * u / w)
        else:
            out.append(f + (p - f) * 0.5 * (1 + math.cos(math.pi * (u - w) / (1 - w))))
    return out

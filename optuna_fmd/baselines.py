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
from collections.abc import Sequence

from ._checks import finite, positive
from ._checks import windows as check_windows
from .space import cosine_value, midpoints

__all__ = ["constant", "cosine", "midpoints", "step_decay"]


def constant(value: float, windows: int) -> list[float]:
    """The same ``value`` in each of ``windows`` windows.

    Args:
        value: The constant value.
        windows: Number of windows K.
    """
    v = finite("value", value)
    return [v] * check_windows(windows)


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
    v = finite("value", value)
    g = positive("gamma", gamma)
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise TypeError(f"`milestones` must be a sequence of floats, but got {milestones!r}.")
    ms = [finite("milestones", m) for m in milestones]
    if any(not 0 < m < 1 for m in ms):
        raise ValueError(f"`milestones` must lie in (0, 1), but got {list(milestones)!r}.")
    if any(b <= a for a, b in itertools.pairwise(ms)):
        raise ValueError(
            f"`milestones` must be strictly increasing, but got {list(milestones)!r}."
        )
    return [v * g ** sum(m <= u for m in ms) for u in midpoints(windows)]


def cosine(peak: float, windows: int, warmup: float = 0.0, final: float = 0.0) -> list[float]:
    """Linear warm-up from 0 to ``peak``, then cosine annealing from ``peak`` to ``final``.

    The maths is :func:`optuna_fmd.space.cosine_value`, the one :class:`~optuna_fmd.space.Cosine`
    family uses. Here ``final`` is the absolute end value; the family's ``final`` is a fraction
    of the peak, so this passes ``final / peak`` (``0`` for ``final = 0``, which gives the same
    values bit for bit as the absolute form; other ends agree to rounding).

    Args:
        peak: The value at the end of the warm-up (the largest value when ``final <= peak``).
        windows: Number of windows K.
        warmup: Training fraction in [0, 1) spent warming up linearly from 0 (default none).
        final: The value the cosine reaches at the end of training (nonzero needs a nonzero
            ``peak``).

    Returns:
        K values, the schedule at each window's midpoint ``u``: ``peak * u / warmup`` during the
        warm-up, else ``final + (peak - final) * (1 + cos(pi * (u - warmup) / (1 - warmup))) / 2``.
    """
    p = finite("peak", peak)
    f = finite("final", final)
    w = finite("warmup", warmup)
    if not 0 <= w < 1:
        raise ValueError(f"`warmup` must lie in [0, 1), but got {warmup!r}.")
    if f != 0 and p == 0:
        raise ValueError(f"`peak` must be nonzero for a nonzero `final`, but got peak={peak!r}.")
    fraction = f / p if f != 0 else 0.0
    return [cosine_value(u, p, w, fraction) for u in midpoints(windows)]

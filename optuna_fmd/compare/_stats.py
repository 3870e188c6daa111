"""Statistics of the comparison: paired one-sided tests, Holm's correction, confidence
intervals and time-to-reach on best-so-far curves (scipy does the distributions).

Example:
    >>> holm({"a": 0.01, "b": 0.04, "c": 0.03})
    {'a': 0.03, 'b': 0.06, 'c': 0.06}
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..outer import iterate_groups

__all__ = [
    "best_curve",
    "holm",
    "mean_ci",
    "paired_difference",
    "time_to_reach",
    "wilcoxon_less",
]


def _finite_pairs(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    if len(a) != len(b):
        raise ValueError(f"`a` and `b` must pair up, but got {len(a)} and {len(b)} values.")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired values must be finite (replace a failed seed by a worst value).")
    return x, y


def wilcoxon_less(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided Wilcoxon signed-rank p-value that ``a`` tends to be below ``b`` (paired).

    Exact null distribution (scipy's ``method="auto"``: exact up to 50 pairs without ties or
    zeros); zero differences are dropped (``zero_method="wilcox"``); 1.0 when every pair ties.
    With 10 pairs the smallest possible p is 1/1024.

    Example:
        >>> wilcoxon_less([1, 2, 3], [2, 3, 4])
        0.125
    """
    x, y = _finite_pairs(a, b)
    if np.all(x == y):
        return 1.0
    return float(stats.wilcoxon(x, y, alternative="less", zero_method="wilcox").pvalue)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (family-wise error control).

    The i-th smallest of m p-values is multiplied by m - i (i from 0), made monotone along the
    order, and capped at 1.
    """
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    out: dict[str, float] = {}
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * float(pvalues[k])))
        out[k] = round(running, 15)
    return {k: out[k] for k in pvalues}


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval ``(mean, low, high)``.

    One value: the interval is the value itself.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"`values` must be finite and non-empty, but got {list(values)!r}.")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def paired_difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> dict[str, Any]:
    """Effect size of ``a`` against ``b`` on paired seeds: the mean difference ``a - b`` with its
    t interval, the median difference, how often ``a`` is lower and higher, and the one-sided
    Wilcoxon p of ``a`` being lower."""
    x, y = _finite_pairs(a, b)
    d = x - y
    mean, low, high = mean_ci(d.tolist(), level)
    return {
        "mean_difference": mean,
        "ci": [low, high],
        "median_difference": float(np.median(d)),
        "lower_on": int((d < 0).sum()),
        "higher_on": int((d > 0).sum()),
        "n": int(d.size),
        "p": wilcoxon_less(x.tolist(), y.tolist()),
    }


#: A loss within this of chance (the log of the class count) counts as a dead run.
CHANCE_TOL = 0.05


def dead(losses: Sequence[float | None], chance: float) -> int:
    """How many of ``losses`` are runs that died: diverged (``None`` or not finite) or no
    better than predicting every class alike (at least ``chance - CHANCE_TOL``, ``chance``
    being the log of the class count).

    Example:
        >>> dead([0.4, None, 2.30, float("inf")], math.log(10))
        3
    """
    return sum(v is None or not math.isfinite(v) or v >= chance - CHANCE_TOL for v in losses)


def iterate_records(
    trials: Sequence[Mapping[str, Any]], population: int | None, cliffs: Collection[int] = ()
) -> list[Mapping[str, Any]]:
    """A population method's trials as one record per outer iterate (``trial["iterate"]``):
    its members' mean value, ending when its last member ended, numbered by its first member;
    an iterate counts once all ``population`` members completed with a value. Without a
    population the trials themselves. ``cliffs``: iterates (trials, without a population)
    left out, unless nothing else is left (:func:`~optuna_fmd.outer.iterate_groups`).

    Example:
        >>> ts = [{"number": 0, "iterate": 0, "end": 1.0, "value": 0.5, "state": "COMPLETE"},
        ...       {"number": 1, "iterate": 0, "end": 2.0, "value": 0.3, "state": "COMPLETE"}]
        >>> [(r["value"], r["end"]) for r in iterate_records(ts, 2)]
        [(0.4, 2.0)]
    """
    if not population:
        kept = [t for t in trials if t.get("number") not in cliffs]
        return kept if any(t.get("value") is not None for t in kept) else list(trials)
    by_number = {
        t["number"]: t
        for t in trials
        if t.get("state", "COMPLETE") == "COMPLETE"
        and t.get("value") is not None
        and t.get("iterate") is not None
    }
    points = [(n, t["iterate"], float(t["value"])) for n, t in by_number.items()]
    out = [
        {
            **by_number[numbers[0]],
            "value": value,
            "end": max(float(by_number[n]["end"]) for n in numbers),
        }
        for value, numbers in iterate_groups(points, population, cliffs)
    ]
    return sorted(out, key=lambda r: r["end"])


def best_curve(
    trials: Sequence[Mapping[str, Any]], budget: float | None = None
) -> list[tuple[float, float]]:
    """``(cost, best value so far)`` at each trial end that improved the best, in budget order.

    A trial counts when it completed with a finite ``value`` and its ``end`` (cumulative cost)
    is at most ``budget``.
    """
    points: list[tuple[float, float]] = []
    best = math.inf
    done = [
        t
        for t in trials
        if t.get("end") is not None and (budget is None or float(t["end"]) <= budget + 1e-12)
    ]
    for t in sorted(done, key=lambda t: float(t["end"])):
        v = t.get("value")
        complete = t.get("state", "COMPLETE") == "COMPLETE"
        if complete and v is not None and math.isfinite(v) and v < best:
            best = float(v)
            points.append((float(t["end"]), best))
    return points


def time_to_reach(
    trials: Sequence[Mapping[str, Any]], target: float, budget: float | None = None
) -> float | None:
    """Cost at which the best value so far first reached ``<= target`` (``None``: never).

    Example:
        >>> trials = [{"end": 2.0, "value": 0.5}, {"end": 4.0, "value": 0.3}]
        >>> time_to_reach(trials, 0.4)
        4.0
    """
    for cost, best in best_curve(trials, budget):
        if best <= target:
            return cost
    return None

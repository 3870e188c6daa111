"""The comparison's statistics against scipy and against hand-worked cases."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from optuna_fmd.compare import _stats


def test_wilcoxon_matches_scipy_exact_and_reaches_1_over_1024_with_10_seeds() -> None:
    rng = random.Random(0)
    for n in (3, 5, 10, 12):
        a = [rng.gauss(0, 1) for _ in range(n)]
        b = [x + rng.gauss(0.3, 1) for x in a]
        want = stats.wilcoxon(a, b, alternative="less", method="exact").pvalue
        assert _stats.wilcoxon_less(a, b) == pytest.approx(want, abs=1e-12)
    lower = [0.30 + 0.001 * i for i in range(10)]
    higher = [v + 0.01 + 0.001 * i for i, v in enumerate(lower)]
    assert _stats.wilcoxon_less(lower, higher) == 1 / 1024
    assert _stats.wilcoxon_less(higher, lower) == 1.0
    assert _stats.wilcoxon_less([1.0, 2.0], [1.0, 2.0]) == 1.0  # every pair ties
    with pytest.raises(ValueError, match="must pair up"):
        _stats.wilcoxon_less([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        _stats.wilcoxon_less([1.0, math.inf], [2.0, 3.0])


def test_holm_matches_the_step_down_rule() -> None:
    # sorted 0.01, 0.02, 0.04, 0.30 -> x4, x3, x2, x1 = 0.04, 0.06, 0.08, 0.30
    got = _stats.holm({"a": 0.04, "b": 0.01, "c": 0.30, "d": 0.02})
    assert got == pytest.approx({"a": 0.08, "b": 0.04, "c": 0.30, "d": 0.06})
    # monotone: a larger raw p never gets a smaller adjusted one; capped at 1
    got = _stats.holm({"a": 0.01, "b": 0.011, "c": 0.9})
    assert got["a"] == pytest.approx(0.03) and got["b"] == pytest.approx(0.03)
    assert _stats.holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_mean_ci_matches_scipy_t_interval() -> None:
    x = [0.31, 0.35, 0.29, 0.33, 0.30, 0.36]
    mean, lo, hi = _stats.mean_ci(x)
    want = stats.t.interval(0.95, len(x) - 1, loc=sum(x) / len(x), scale=stats.sem(x))
    assert mean == pytest.approx(sum(x) / len(x))
    assert (lo, hi) == pytest.approx(want)
    assert _stats.mean_ci([0.5]) == (0.5, 0.5, 0.5)


def test_paired_difference_reports_effect_interval_and_p() -> None:
    a = [0.30, 0.31, 0.29, 0.32, 0.30]
    b = [0.35, 0.36, 0.33, 0.34, 0.38]
    d = _stats.paired_difference(a, b)
    assert d["mean_difference"] == pytest.approx(-0.048)
    assert d["ci"][0] < d["mean_difference"] < d["ci"][1] < 0
    assert d["lower_on"] == 5 and d["n"] == 5 and d["p"] == 1 / 32


def test_best_curve_and_time_to_reach_respect_the_budget() -> None:
    trials = [
        {"end": 1.0, "value": 0.5, "state": "COMPLETE"},
        {"end": 2.0, "value": None, "state": "FAIL"},
        {"end": 3.0, "value": 0.2, "state": "PRUNED"},  # an intermediate value: never a best
        {"end": 4.0, "value": 0.3, "state": "COMPLETE"},
        {"end": 9.0, "value": 0.1, "state": "COMPLETE"},
    ]
    assert _stats.best_curve(trials) == [(1.0, 0.5), (4.0, 0.3), (9.0, 0.1)]
    assert _stats.best_curve(trials, budget=5.0) == [(1.0, 0.5), (4.0, 0.3)]
    assert _stats.time_to_reach(trials, 0.4) == 4.0
    assert _stats.time_to_reach(trials, 0.1, budget=5.0) is None
    assert _stats.time_to_reach(trials, 0.1) == 9.0

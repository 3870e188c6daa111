"""The comparison's best point: :func:`~optuna_fmd.outer.best_group` with its own tie rule."""

from __future__ import annotations

from typing import Any

from optuna_fmd.compare import _unit
from optuna_fmd.outer import best_group


def _trial(number: int, end: float, value: float, iterate: int | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"number": number, "end": end, "value": value, "state": "COMPLETE"}
    return t if iterate is None else {**t, "iterate": iterate}


def test_of_equal_means_the_comparison_keeps_the_iterate_that_ended_first() -> None:
    # iterate 0 (trials 0, 3) ends at 4, iterate 1 (trials 1, 2) at 3: equal means of 0.4
    trials = [_trial(0, 1.0, 0.3, 0), _trial(1, 2.0, 0.5, 1), _trial(2, 3.0, 0.3, 1)]
    trials.append(_trial(3, 4.0, 0.5, 0))
    points = [(t["number"], t["iterate"], t["value"]) for t in trials]
    first = best_group(points, 2)
    assert first is not None and first.trials == [0, 3]  # the sampler's rule: first trial
    best = _unit._best(trials, 10.0, population=2)
    assert best is not None and best["number"] == 1 and best["end"] == 3.0
    alone = [_trial(0, 2.0, 0.4), _trial(1, 1.0, 0.4)]  # ended first: trial 1
    assert _unit._best(alone, 10.0)["number"] == 1  # type: ignore[index]

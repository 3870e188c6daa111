"""The budget: plain-episode equivalents and lock-step turns, under an artificial load."""

from __future__ import annotations

import pytest

from optuna_fmd.compare import CostUnit, LockStep


def test_cost_unit_is_the_median_of_recent_plain_episodes() -> None:
    unit = CostUnit(window=3)
    with pytest.raises(RuntimeError, match="no plain episode"):
        _ = unit.value
    for s in (1.0, 10.0, 2.0, 3.0):  # the 10 s outlier leaves the median alone
        unit.observe(s)
    assert unit.value == 3.0  # median of the last three: 10, 2, 3
    assert unit.to_pee(6.0) == 2.0
    assert unit.spread() == {"n": 4, "min": 1.0, "median": 2.5, "max": 10.0, "max_over_min": 10.0}
    with pytest.raises(ValueError, match="positive"):
        unit.observe(0.0)


def test_a_trial_that_would_overrun_is_not_started_and_one_that_did_is_not_counted() -> None:
    lock = LockStep(["a"], budget=10.0)
    assert lock.next() == "a"
    lock.charge("a", 4.0)
    assert lock.next() == "a"
    lock.charge("a", 4.0)
    assert lock.next() is None  # 8 + 4 would pass 10: not started
    assert lock.done == {"a": "budget"}
    assert lock.spans("a") == [(0.0, 4.0, True), (4.0, 8.0, True)]
    late = LockStep(["a"], budget=10.0)
    late.charge("a", 1.0)
    assert late.next() == "a"
    late.charge("a", 12.0)  # ran longer than its predecessor predicted
    assert late.spans("a")[-1] == (1.0, 13.0, False)


def _simulate(load_at: float | None, *, normalise: bool = True) -> dict[str, int]:
    """Trials per method that end within the budget, as the runner charges them: `hg` trials
    cost 5 plain episodes, the three others 1 and serve as the yardstick (as plain trials do);
    once every method has used `load_at` of its budget the machine gets 3x slower."""
    unit = CostUnit()
    unit.observe(1.0)
    lock = LockStep(["hg", "a", "b", "c"], 30.0, unit if normalise else None)
    seconds = {"hg": 5.0, "a": 1.0, "b": 1.0, "c": 1.0}
    while (m := lock.next()) is not None:
        slow = load_at is not None and min(map(lock.used, seconds)) >= load_at
        took = seconds[m] * (3.0 if slow else 1.0)
        seq = len(unit.observed)
        if m != "hg":
            unit.observe(took)
        lock.charge(m, took, seq)
    return {m: sum(counted for _, _, counted in lock.spans(m)) for m in seconds}


def test_lock_step_gives_every_method_the_same_budget_under_a_changing_load() -> None:
    calm = _simulate(None)
    assert calm == {"hg": 6, "a": 30, "b": 30, "c": 30}
    for load_at in (5.0, 15.0, 24.0):
        loaded = _simulate(load_at)
        # a step in the load right at a trial blurs that trial's charge: one trial at most
        assert all(calm[m] - 1 <= loaded[m] <= calm[m] for m in calm), loaded
    # the same load on a budget in seconds: the hypergradient method loses a third of its trials
    assert _simulate(15.0, normalise=False)["hg"] == 4


def test_the_yardstick_around_an_event_uses_readings_on_both_sides() -> None:
    unit = CostUnit()
    for s in (1.0, 1.0, 3.0, 3.0, 3.0):
        unit.observe(s)
    assert unit.around(0) == 1.0  # before any reading: the first two
    assert unit.around(2) == 2.0  # 1, 1 before; 3, 3 after
    assert unit.around(5) == 3.0


def test_methods_that_stop_early_leave_the_turns() -> None:
    lock = LockStep(["grid", "tpe"], budget=5.0)
    assert lock.next() == "grid"
    lock.charge("grid", 1.0)
    lock.finish("grid", "grid done")
    assert [lock.next() for _ in range(1)] == ["tpe"]
    assert lock.done["grid"] == "grid done"
    with pytest.raises(ValueError, match="distinct"):
        LockStep(["a", "a"], 1.0)

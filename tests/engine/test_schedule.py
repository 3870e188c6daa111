from __future__ import annotations

import math

import pytest

from optuna_fmd.engine import window_index, window_start
from optuna_fmd.space import Schedule, ScheduleSpace


@pytest.mark.parametrize("steps,windows", [(10, 1), (10, 3), (10, 10), (7, 3), (100, 7), (5, 5)])
def test_window_rule_is_floor_t_k_over_t(steps: int, windows: int) -> None:
    idx = [window_index(t, steps, windows) for t in range(steps)]
    assert idx == [math.floor(t * windows / steps) for t in range(steps)]
    assert idx[0] == 0 and idx[-1] == windows - 1
    for k in range(windows):
        start = window_start(k, steps, windows)
        assert idx[start] == k
        if start > 0:
            assert idx[start - 1] == k - 1


def test_schedule_defaults_and_init() -> None:
    s = Schedule(windows=3, low=1e-3, high=1e-1, log=True)
    assert s.init == pytest.approx(1e-2)
    assert Schedule(windows=2, low=0.0, high=1.0).initial_values() == [0.5, 0.5]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"windows": 0, "low": 0.0, "high": 1.0}, r"`windows` must be a positive int, but got 0"),
        (
            {"windows": 2.5, "low": 0.0, "high": 1.0},
            r"`windows` must be a positive int, but got 2.5",
        ),
        ({"windows": 2, "low": 1.0, "high": 1.0}, r"`low` must be smaller than `high`"),
        ({"windows": 2, "low": 2.0, "high": 1.0}, r"low=2.0 >= high=1.0"),
        ({"windows": 2, "low": 0.0, "high": 1.0, "log": True}, r"`low` must be positive"),
        ({"windows": 2, "low": 0.0, "high": 1.0, "init": 2.0}, r"`init` must lie inside"),
        (
            {"windows": 2, "low": float("nan"), "high": 1.0},
            r"`low` must be a finite float, but got nan",
        ),
        ({"windows": 2, "low": "0", "high": 1.0}, r"`low` must be a finite float, but got .0."),
    ],
)
def test_bad_schedules_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        Schedule(**kwargs)


def test_space_names_and_round_trip() -> None:
    space = ScheduleSpace(
        {
            "lr": Schedule(windows=2, low=1e-3, high=1.0, log=True, init=0.1),
            "momentum": Schedule(windows=1, low=0.0, high=0.99, init=0.9),
        }
    )
    assert space.param_names() == ["lr_0", "lr_1", "momentum_0"]
    assert space.n_params == 3
    params = space.to_params({"lr": [0.1, 0.2], "momentum": [0.5]})
    assert params == {"lr_0": 0.1, "lr_1": 0.2, "momentum_0": 0.5}
    assert space.from_params(params) == {"lr": [0.1, 0.2], "momentum": [0.5]}


@pytest.mark.parametrize(
    "schedules,match",
    [
        ({"lr": [0.1, 0.2]}, r"missing: \['momentum'\]"),
        ({"lr": [0.1, 0.2], "momentum": [0.5], "beta": [1.0]}, r"unknown: \['beta'\]"),
        ({"lr": [0.1], "momentum": [0.5]}, r"`lr` must have 2 values"),
        ({"lr": [0.1, 5.0], "momentum": [0.5]}, r"`lr` value 1 must lie inside"),
        (
            {"lr": [0.1, float("inf")], "momentum": [0.5]},
            r"`lr\[1\]` must be a finite float, but got inf",
        ),
    ],
)
def test_space_refuses_bad_schedules(schedules: dict, match: str) -> None:
    space = ScheduleSpace(
        {
            "lr": Schedule(windows=2, low=1e-3, high=1.0, log=True),
            "momentum": Schedule(windows=1, low=0.0, high=0.99),
        }
    )
    with pytest.raises(ValueError, match=match):
        space.validate(schedules)


def test_space_refuses_bad_construction() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ScheduleSpace({})
    with pytest.raises(TypeError, match="must be a Schedule"):
        ScheduleSpace({"lr": (1, 2)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="identifiers"):
        ScheduleSpace({"learning rate": Schedule(windows=1, low=0.0, high=1.0)})

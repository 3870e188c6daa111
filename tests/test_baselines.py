"""Baseline window schedules: values at window midpoints, stretching, and input checks."""

from __future__ import annotations

import itertools
import math

import pytest

from optuna_fmd import baselines


def test_constant() -> None:
    assert baselines.constant(0.1, 3) == [0.1, 0.1, 0.1]


def test_midpoints() -> None:
    assert baselines.midpoints(4) == [0.125, 0.375, 0.625, 0.875]


def test_step_decay_at_half_and_three_quarters() -> None:
    vals = baselines.step_decay(1.0, 8)
    assert vals == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    assert baselines.step_decay(2.0, 4, milestones=(0.3,), gamma=0.5) == [2.0, 1.0, 1.0, 1.0]


def test_cosine_values_and_shape() -> None:
    k = 10
    vals = baselines.cosine(0.2, k, final=0.01)
    for i, v in enumerate(vals):
        u = (i + 0.5) / k
        assert v == pytest.approx(0.01 + 0.19 * 0.5 * (1 + math.cos(math.pi * u)))
    assert all(a > b for a, b in itertools.pairwise(vals))


def test_cosine_warmup_rises_then_anneals() -> None:
    vals = baselines.cosine(1.0, 10, warmup=0.2)
    assert vals[0] == pytest.approx(0.25) and vals[1] == pytest.approx(0.75)
    assert vals[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.05 / 0.8)))
    assert max(vals) == vals[2]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: baselines.constant(0.1, 0), r"`windows` must be a positive int, but got 0"),
        (lambda: baselines.constant(float("nan"), 2), r"`value` must be a finite float"),
        (lambda: baselines.step_decay(0.1, 4, gamma=0.0), r"`gamma` must be positive, but got 0"),
        (lambda: baselines.step_decay(0.1, 4, milestones=(0.5, 1.2)), r"`milestones` must lie"),
        (lambda: baselines.step_decay(0.1, 4, milestones=(0.6, 0.4)), "strictly increasing"),
        (lambda: baselines.cosine(0.1, 4, warmup=1.0), r"`warmup` must lie in \[0, 1\)"),
        (lambda: baselines.cosine(0.1, True), r"`windows` must be a positive int"),
    ],
)
def test_bad_inputs_are_named(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]

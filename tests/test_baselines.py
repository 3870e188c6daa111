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


def _cosine_before(peak: float, windows: int, warmup: float, final: float) -> list[float]:
    """``baselines.cosine`` as it was written before it shared the space's cosine maths."""
    out = []
    for u in [(i + 0.5) / windows for i in range(windows)]:
        if u < warmup:
            out.append(peak * u / warmup)
        else:
            c = 1 + math.cos(math.pi * (u - warmup) / (1 - warmup))
            out.append(final + (peak - final) * 0.5 * c)
    return out


def test_cosine_with_final_zero_is_bitwise_what_it_was() -> None:
    """Stored comparison results depend on these values: the shared maths computes
    ``peak * (0.5 * c)`` where the old code computed ``(peak * 0.5) * c``, equal bit for bit
    because multiplying by 0.5 is exact."""
    peaks = [1e-5, 3.3e-4, 1e-3, 0.01, 0.05, 0.0731, 0.1, 0.3, 1.0, 2.5, 17.0]
    warmups = [0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 1 / 3, 0.45, 0.5, 0.9]
    for peak, warmup, windows in itertools.product(peaks, warmups, (1, 3, 4, 10, 25)):
        got = baselines.cosine(peak, windows, warmup=warmup)
        want = _cosine_before(peak, windows, warmup, 0.0)
        assert [v.hex() for v in got] == [v.hex() for v in want], (peak, warmup, windows)


def test_cosine_is_the_families_cosine() -> None:
    """One maths: the baseline with an absolute ``final`` is the family with the fraction
    ``final / peak``."""
    from optuna_fmd.space import Cosine, cosine_value, midpoints

    for peak, warmup, final in [(0.1, 0.0, 0.0), (0.2, 0.3, 0.02), (0.05, 0.1, 0.05)]:
        got = baselines.cosine(peak, 8, warmup=warmup, final=final)
        family = Cosine(windows=8).window_values(
            {"peak": peak, "warmup": warmup, "final": final / peak}
        )
        assert got == family
        assert got == [cosine_value(u, peak, warmup, final / peak) for u in midpoints(8)]
        assert got == pytest.approx(_cosine_before(peak, 8, warmup, final), rel=1e-14)


def test_cosine_to_a_nonzero_final_needs_a_nonzero_peak() -> None:
    with pytest.raises(ValueError, match=r"`peak` must be nonzero for a nonzero `final`"):
        baselines.cosine(0.0, 4, final=0.1)
    assert baselines.cosine(0.0, 4) == [0.0] * 4

"""The checks of a hypergradient against the plain probe along it and of members against each
other (optuna_fmd.outer.search._trust)."""

from __future__ import annotations

import math

from optuna_fmd.outer.search import _trust


def test_check_probe_and_check_members_say_when_a_hypergradient_disagrees() -> None:
    assert _trust.check_probe(-0.01, -0.004).agrees
    assert not _trust.check_probe(-0.01, -0.2).agrees  # found 20x the prediction
    assert not _trust.check_probe(-5.0, 0.002).agrees  # wrong sign
    assert _trust.check_probe(-5.0, math.inf).ratio is None
    assert _trust.check_members([[1.0, 0.5], [2.0, 0.8]]).agrees
    apart = _trust.check_members([[1.0, 0.5], [-1.0, 0.1]])
    assert not apart.agrees and apart.cosine is not None and apart.cosine < 0
    sizes = _trust.check_members([[1.0, 0.5], [300.0, 100.0]])
    assert not sizes.agrees and sizes.cosine is not None and sizes.cosine > 0
    assert sizes.norm_ratio is not None and sizes.norm_ratio > 10
    # only the masked coordinates count
    assert _trust.check_members([[1.0, 5.0], [1.0, -5.0]], [True, False]).agrees


def test_mean_direction_averages_unit_vectors_at_the_mean_norm() -> None:
    assert _trust.mean_direction([[3.0, 0.0], [0.0, 1.0]]) == [1.0, 1.0]

"""Long-tailed training splits (Task.imbalance): the profile, the balanced validation split, the
unchanged default, class_counts, the checks and Custom with and without ``val``."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import optuna_fmd as fmd
from optuna_fmd.tasks import long_tailed_counts, random_split


@pytest.fixture(scope="module")
def digits_labels() -> torch.Tensor:
    return fmd.tasks.Digits().data().train_y


def _expected(counts: list[int], fraction: float, imbalance: float) -> tuple[int, list[int]]:
    """(validation count per class, training counts per class) written out from the rule."""
    m = max(1, round(fraction * min(counts)))
    n_max = min(counts) - m
    c_last = len(counts) - 1
    return m, [max(1, math.floor(n_max * imbalance ** (-c / c_last))) for c in range(len(counts))]


def _blocks(sizes: list[int], dim: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``sizes[c]`` examples of class c (interleaved by a fixed shuffle), random inputs."""
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    g = torch.Generator().manual_seed(seed)
    y = y[torch.randperm(y.shape[0], generator=g)]
    return torch.randn(y.shape[0], dim, generator=g), y


def _custom(train: tuple[torch.Tensor, torch.Tensor], **kw: Any) -> fmd.tasks.Custom:
    kw.setdefault("check", False)  # the forward-mode dry run is tested elsewhere
    return fmd.tasks.Custom(model=nn.Linear(4, 5), train=train, batch_size=8, **kw)


def _counts(labels: torch.Tensor, idx: torch.Tensor, n_classes: int) -> list[int]:
    return torch.bincount(labels[idx], minlength=n_classes).tolist()


# -- the profile ------------------------------------------------------------------------------
def test_long_tailed_counts_profile() -> None:
    assert long_tailed_counts(500, 5, 100.0) == [500, 158, 50, 15, 5]
    assert long_tailed_counts(5700, 10, 100.0)[0] == 5700
    assert long_tailed_counts(5700, 10, 100.0)[-1] == 57
    assert long_tailed_counts(40, 4, 1.0) == [40] * 4
    assert long_tailed_counts(3, 3, 1000.0) == [3, 1, 1]  # at least one example per class
    assert long_tailed_counts(7, 1, 10.0) == [7]


def test_digits_counts_follow_the_formula(digits_labels: torch.Tensor) -> None:
    task = fmd.tasks.Digits(imbalance=10)
    full = torch.bincount(digits_labels, minlength=10).tolist()
    m, want = _expected(full, 0.05, 10.0)
    assert (m, want[0], want[-1]) == (7, 130, 13)
    for seed in (0, 1):
        train, val = task.split(seed)
        assert _counts(digits_labels, train, 10) == want
        assert _counts(digits_labels, val, 10) == [m] * 10
        assert task.class_counts(seed) == want


def test_custom_counts_with_known_class_sizes() -> None:
    # 100 of each of 5 classes, 10 of each held out: n_max = 90, n_c = floor(90 / 9 ** (c / 4))
    task = _custom(_blocks([100] * 5), imbalance=9.0, val_fraction=0.1)
    assert task.class_counts(0) == [90, 51, 30, 17, 10]
    _, val = task.split(0)
    assert _counts(task.data().train_y, val, 5) == [10] * 5


def test_head_class_is_not_limited_by_the_data() -> None:
    # n_max is the smallest class's count after validation, even when class 0 is the largest
    task = _custom(_blocks([200, 50, 60, 70, 80]), imbalance=4.0, val_fraction=0.1)
    assert task.class_counts(0) == [45, 31, 22, 15, 11]  # m = 5, n_max = 45


def test_imbalance_one_is_balanced(digits_labels: torch.Tensor) -> None:
    counts = fmd.tasks.Digits(imbalance=1).class_counts(3)
    assert counts == [min(torch.bincount(digits_labels).tolist()) - 7] * 10


# -- the balanced validation split -------------------------------------------------------------
def test_split_is_disjoint_deterministic_and_seeded(digits_labels: torch.Tensor) -> None:
    task = fmd.tasks.Digits(imbalance=10)
    train, val = task.split(0)
    n = digits_labels.shape[0]
    both = torch.cat([train, val])
    assert both.unique().numel() == both.numel() and int(both.min()) >= 0 and int(both.max()) < n
    again = fmd.tasks.Digits(imbalance=10).split(0)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    train1, val1 = task.split(1)
    assert not torch.equal(val.sort().values, val1.sort().values)
    assert not torch.equal(train.sort().values, train1.sort().values)
    assert task.class_counts(1) == task.class_counts(0)


def test_validation_split_does_not_depend_on_imbalance() -> None:
    # drawn before the subsampling: the same validation examples whatever the ratio
    _, a = fmd.tasks.Digits(imbalance=2).split(5)
    _, b = fmd.tasks.Digits(imbalance=50).split(5)
    assert torch.equal(a, b)


def test_test_split_is_untouched() -> None:
    plain, lt = fmd.tasks.Digits().data(), fmd.tasks.Digits(imbalance=10).data()
    assert plain.test_y is not None and lt.test_y is not None
    assert torch.equal(plain.test_y, lt.test_y)


# -- imbalance=None is the old split, bitwise ---------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 17])
def test_default_split_is_random_split(digits_labels: torch.Tensor, seed: int) -> None:
    task = fmd.tasks.Digits()
    assert task.imbalance is None
    want = random_split(digits_labels.shape[0], 0.05, seed)
    got = task.split(seed)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert task.class_counts(seed) == _counts(digits_labels, want[0], 10)
    x, y = _blocks([30] * 5)
    custom = _custom((x, y), val_fraction=0.2)
    want = random_split(150, 0.2, seed)
    got = custom.split(seed)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_episode_trains_on_the_long_tailed_split() -> None:
    task = fmd.tasks.Digits(imbalance=10, steps=3, batch_size=16)
    res = fmd.run_episode(task, {"lr": [0.1]}, hypergradient=False)
    assert math.isfinite(res.val_loss)


# -- checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [True, 0.5, 0, -2.0, float("nan"), float("inf"), "10", [10]])
def test_bad_imbalance_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="`imbalance` must be a finite real >= 1"):
        fmd.tasks.Digits(imbalance=bad)  # type: ignore[arg-type]


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


def test_imbalance_needs_class_labels() -> None:
    x = torch.randn(40, 4)
    with pytest.raises(ValueError, match="`imbalance` needs integer class labels"):
        _custom((x, torch.randn(40, 5)), imbalance=10.0, loss=_mse)
    with pytest.raises(ValueError, match="`imbalance` needs class labels in"):
        _custom(_blocks([10] * 5), imbalance=10.0, n_classes=3)
    plain = _custom((x, torch.randn(40, 5)), loss=_mse)
    with pytest.raises(ValueError, match="`class_counts` needs integer class labels"):
        plain.class_counts(0)


def test_imbalance_needs_enough_examples_per_class() -> None:
    with pytest.raises(ValueError, match="`imbalance` needs at least 2 examples of every class"):
        _custom(_blocks([20, 20, 20, 20, 1]), imbalance=10.0)


# -- Custom -----------------------------------------------------------------------------------
def test_custom_with_val_subsamples_train_only() -> None:
    x, y = _blocks([40, 30, 50, 60, 45])
    vx, vy = _blocks([3, 7, 1, 2, 4], seed=1)
    task = _custom((x, y), val=(vx, vy), imbalance=3.0, val_fraction=0.5)
    train, val = task.split(0)
    assert torch.equal(val, torch.arange(225, 242))  # the given val, as is
    assert int(train.max()) < 225 and train.unique().numel() == train.numel()
    # n_max: the smallest class of train (30), nothing held out of it
    assert task.class_counts(0) == long_tailed_counts(30, 5, 3.0) == [30, 22, 17, 13, 10]
    again = task.split(0)[0]
    assert torch.equal(train, again)
    assert not torch.equal(train.sort().values, task.split(1)[0].sort().values)
    plain = _custom((x, y), val=(vx, vy))
    assert torch.equal(plain.split(0)[0], torch.arange(225))
    assert plain.class_counts(0) == [40, 30, 50, 60, 45]


def test_custom_without_val_holds_out_a_balanced_split() -> None:
    x, y = _blocks([40, 30, 50, 60, 45])
    task = _custom((x, y), imbalance=3.0, val_fraction=0.1)
    train, val = task.split(2)
    assert _counts(y, val, 5) == [3] * 5  # m = round(0.1 * 30)
    assert task.class_counts(2) == long_tailed_counts(27, 5, 3.0)
    assert set(train.tolist()).isdisjoint(val.tolist())

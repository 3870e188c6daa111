"""A batch larger than the training split is refused before any training: by
``Task.check_batch_size`` (the command line calls it before it creates a study; ``Custom`` at
construction), from the split's size known without loading the data."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import optuna_fmd as fmd
from optuna_fmd.tasks import _vision

#: Each built-in task, and the size of its training split (validation held out) as its data
#: gives it: Digits 1,438 images less 72 held out; Synthetic(n_train=100) 100 less 5; a subset of
#: 50 less 2.
BUILT_IN: list[tuple[type[fmd.tasks.Task], dict[str, Any], int]] = [
    (fmd.tasks.Digits, {}, 1366),
    (fmd.tasks.Synthetic, {"n_train": 100}, 95),
    (fmd.tasks.FashionMNIST, {"subset": 50}, 48),
    (fmd.tasks.MNIST, {"subset": 50}, 48),
    (fmd.tasks.CIFAR10, {"subset": 50}, 48),
    (fmd.tasks.FashionMNIST, {}, 57000),
]


@pytest.mark.parametrize(("cls", "kwargs", "n"), BUILT_IN)
def test_a_built_in_task_refuses_a_batch_larger_than_its_split_without_loading_data(
    cls: type[fmd.tasks.Task], kwargs: dict[str, Any], n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_loading(self: fmd.tasks.Task) -> fmd.tasks.Dataset:
        raise AssertionError("the check loaded the data")

    monkeypatch.setattr(cls, "_load", no_loading)
    fits = cls(batch_size=n, **kwargs)  # the largest batch that fits
    assert fits.train_size() == n
    fits.check_batch_size()
    rule = rf"^`batch_size` must not exceed the training split \({n} examples\), but got {n + 1}\."
    with pytest.raises(ValueError, match=rule):
        cls(batch_size=n + 1, **kwargs).check_batch_size()


@pytest.mark.parametrize(
    "task",
    [
        fmd.tasks.Digits(batch_size=8),
        fmd.tasks.Synthetic(n_train=100, batch_size=8),
        fmd.tasks.Digits(batch_size=8, val_fraction=0.3),
    ],
)
def test_the_size_known_before_loading_is_the_split_the_episode_trains_on(
    task: fmd.tasks.Task,
) -> None:
    known = task.train_size()
    assert known == task.split(0)[0].shape[0] == task.split(7)[0].shape[0]
    assert task.train_size() == known  # the same once the data is loaded


def test_an_imbalanced_built_in_task_is_checked_at_its_first_episode() -> None:
    task = fmd.tasks.Digits(imbalance=10, batch_size=600)  # its size needs the labels
    assert task.train_size() is None
    with pytest.raises(ValueError, match=r"training split \(527 examples\), but got 600"):
        fmd.run_episode(task, {"lr": [0.1]}, hypergradient=False)
    assert task.train_size() == 527  # known once the data is loaded


@pytest.mark.skipif(
    not _vision.FASHION_MNIST_OFFLINE.is_dir(), reason="Fashion-MNIST is not installed"
)
def test_the_fashion_subset_size_is_the_split_of_its_files() -> None:
    task = fmd.tasks.FashionMNIST(subset=50, batch_size=8)
    known = task.train_size()
    task.data()
    assert known == task.train_size() == task.split(0)[0].shape[0] == 48


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 10, generator=g), torch.arange(n) % 3


def test_custom_refuses_a_batch_larger_than_its_training_split() -> None:
    with pytest.raises(ValueError, match=r"\(19 examples\), but got 64\.$"):
        fmd.tasks.Custom(model=_net(), train=_data(20), batch_size=64)
    assert fmd.tasks.Custom(model=_net(), train=_data(20), batch_size=19).train_size() == 19
    # with a validation set of its own, all of `train` is trained on
    with pytest.raises(ValueError, match=r"\(20 examples\), but got 21\.$"):
        fmd.tasks.Custom(model=_net(), train=_data(20), val=_data(6), batch_size=21)
    assert fmd.tasks.Custom(model=_net(), train=_data(20), val=_data(6), batch_size=20)
    # long-tailed: the subsampled training part (7 per class, 1 of each held out, then 6, 2
    # and 1 kept)
    with pytest.raises(ValueError, match=r"\(9 examples\), but got 10\.$"):
        fmd.tasks.Custom(model=_net(), train=_data(21), imbalance=6, batch_size=10)

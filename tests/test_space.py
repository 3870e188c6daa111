"""Default search spaces: one definition for the CLI, the comparison and users."""

from __future__ import annotations

import pytest

import optuna_fmd as fmd
from optuna_fmd import cli
from optuna_fmd.space import DEFAULT_BOUNDS, default_space


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_default_space_covers_the_optimizer_and_its_start_trains(optimizer: str) -> None:
    space = default_space(optimizer, windows=3)
    assert list(space) == list(DEFAULT_BOUNDS[optimizer])
    task = fmd.tasks.Digits(steps=30, batch_size=32, optimizer=optimizer)
    res = fmd.run_episode(task, space.initial_values(), hypergradient=False)
    assert res.val_loss < 2.3  # below chance (ln 10): the start trains on every optimiser


def test_init_overrides_and_subsets() -> None:
    space = default_space("sgd", 2, hypers=["lr"], init={"lr": 0.1})
    assert space.initial_values() == {"lr": [0.1, 0.1]}
    with pytest.raises(ValueError, match="subset of"):
        default_space("sgd", 2, hypers=["beta1"])
    with pytest.raises(ValueError, match="`optimizer` must be one of"):
        default_space("rmsprop")


def test_the_cli_space_is_the_default_space() -> None:
    a = cli.make_space(["lr", "momentum", "weight_decay"], 4)
    b = default_space("sgd", 4)
    assert {h: (s.low, s.high, s.log, s.init) for h, s in a.items()} == {
        h: (s.low, s.high, s.log, s.init) for h, s in b.items()
    }

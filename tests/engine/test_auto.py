"""engine="auto" picks the cheaper exact engine by the documented cost model."""

from __future__ import annotations

import torch

import optuna_fmd as fmd
from optuna_fmd.engine import HyperTable, choose_engine
from optuna_fmd.engine._auto import FORWARD_BASE, FORWARD_PER_COLUMN, REVERSE, mean_active_columns

STATE = [torch.zeros(1000), torch.zeros(1000)]


def table(k: int, hypers: int = 3, steps: int = 100) -> HyperTable:
    names = ["lr", "momentum", "weight_decay"][:hypers]
    values = {"lr": [0.1] * k, "momentum": [0.9] * k, "weight_decay": [0.0] * k}
    return HyperTable(values, names, steps)


def test_mean_active_columns() -> None:
    assert mean_active_columns(table(1)) == 3.0
    # 10 windows of 10 steps for 3 hypers: 3 * (10 + 9 + ... + 1) * 10 / 100
    assert mean_active_columns(table(10)) == 16.5


def test_cost_model_picks_forward_for_one_column_and_reverse_for_many() -> None:
    assert FORWARD_BASE + FORWARD_PER_COLUMN * 1 <= REVERSE < FORWARD_BASE + FORWARD_PER_COLUMN * 3
    one = choose_engine(table(1, hypers=1), STATE, available_bytes=10**12)
    many = choose_engine(table(10), STATE, available_bytes=10**12)
    assert one.engine == "forward" and many.engine == "reverse"
    assert many.predicted_forward > many.predicted_reverse


def test_memory_overrides_the_time_model() -> None:
    # time says reverse (30 columns), but only forward's 2N + 2 states fit -> forward
    many = table(10, steps=10_000)
    c = choose_engine(many, STATE, available_bytes=10**12)
    assert c.engine == "reverse" and c.reverse_bytes > c.forward_bytes
    assert choose_engine(many, STATE, available_bytes=2 * c.forward_bytes + 16).engine == "forward"
    # time says forward (1 column), but only reverse's checkpoints fit -> reverse
    short = table(1, hypers=1, steps=4)
    f = choose_engine(short, STATE, available_bytes=10**12)
    assert f.engine == "forward" and f.forward_bytes > f.reverse_bytes
    assert (
        choose_engine(short, STATE, available_bytes=2 * f.reverse_bytes + 16).engine == "reverse"
    )


def test_run_episode_records_the_engine_and_agrees() -> None:
    task = fmd.tasks.Digits(steps=30, batch_size=16, dtype=torch.float64)
    sched = {"lr": [0.1] * 3, "momentum": [0.9] * 3}
    auto = fmd.run_episode(task, sched)
    fwd = fmd.run_episode(task, sched, engine="forward")
    rev = fmd.run_episode(task, sched, engine="reverse", checkpoint_every=7)
    assert auto.engine == "reverse" and fwd.engine == "forward" and rev.engine == "reverse"
    assert auto.hypergradient is not None and fwd.hypergradient is not None
    for name, values in fwd.hypergradient.items():
        for a, b in zip(values, auto.hypergradient[name], strict=True):
            assert abs(a - b) <= 1e-9 * max(abs(a), 1.0)
    single = fmd.run_episode(task, {"lr": [0.1]})
    assert single.engine == "forward"

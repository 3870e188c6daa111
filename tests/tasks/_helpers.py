"""Shared checks for the task tests: forward-mode hypergradient vs central finite differences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import optuna_fmd as fmd


def fd_check(
    task: fmd.tasks.Task,
    schedules: Mapping[str, Sequence[float]],
    *,
    eps: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Assert that run_episode's hypergradient matches central finite differences of the plain
    episode's validation loss for every window value; return the hypergradient."""
    res = fmd.run_episode(task, schedules, seed=seed)
    assert res.hypergradient is not None and not res.diverged
    for name, values in schedules.items():
        for k in range(len(values)):
            hi = {n: list(v) for n, v in schedules.items()}
            lo = {n: list(v) for n, v in schedules.items()}
            hi[name][k] += eps
            lo[name][k] -= eps
            up = fmd.run_episode(task, hi, seed=seed, hypergradient=False).val_loss
            down = fmd.run_episode(task, lo, seed=seed, hypergradient=False).val_loss
            fd = (up - down) / (2 * eps)
            got = res.hypergradient[name][k]
            assert abs(got - fd) <= rtol * max(abs(fd), 1e-4), (name, k, got, fd)
    return res.hypergradient

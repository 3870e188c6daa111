"""Forward mode equals reverse mode through the unrolled loop, the FDS recurrence and central
finite differences, in float64 with fixed seeds."""

from __future__ import annotations

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import (
    HyperTable,
    InnerProblem,
    run_bptt,
    run_fds,
    run_forward,
    run_plain,
)
from optuna_fmd.episode import build_episode

from ._problems import OPTIMIZERS, bn_dropout_problem, bn_table, rel, schedules

F64 = torch.float64
STEPS = 200


def fd_check(
    problem: InnerProblem,
    table: HyperTable,
    state0: list,
    hg: torch.Tensor,
    columns: list[int],
    eps_rel: float = 1e-7,
) -> None:
    """Central differences; small steps by default, since a ReLU network is only piecewise smooth
    in its hyperparameters (larger steps cross kinks), larger for smooth networks (rounding)."""
    for j in columns:
        name, k = table.columns[j]
        eps = eps_rel * max(abs(table.values[name][k]), 1e-2)
        vals = []
        for sign in (1.0, -1.0):
            values = {n: list(v) for n, v in table.values.items()}
            values[name][k] += sign * eps
            shifted = HyperTable(values, table.scheduled, table.steps)
            vals.append(run_plain(problem, shifted, state0).val_loss)
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert abs(fd - float(hg[j])) <= 1e-3 * max(abs(fd), 1e-4), (name, k, fd, float(hg[j]))


@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("optimizer,nesterov", OPTIMIZERS)
def test_forward_equals_bptt_fds_and_finite_differences(
    optimizer: str, nesterov: bool, k: int
) -> None:
    task = fmd.tasks.Digits(
        steps=STEPS, batch_size=16, dtype=F64, optimizer=optimizer, nesterov=nesterov
    )
    problem, table, state0 = build_episode(task, schedules(optimizer, k), seed=1)
    fwd = run_forward(problem, table, state0)
    bptt = run_bptt(problem, table, state0)
    assert fwd.hypergradient is not None and bptt.hypergradient is not None
    assert fwd.hypergradient.shape == (table.n_columns,)
    assert rel(fwd.hypergradient, bptt.hypergradient) <= 1e-6
    assert fwd.val_loss == pytest.approx(bptt.val_loss, rel=1e-12)
    if optimizer == "sgd" and not nesterov:
        fds = run_fds(problem, table, state0)
        assert fds.hypergradient is not None
        assert rel(fwd.hypergradient, fds.hypergradient) <= 1e-6
    # one column per hyper, in the last window (the longest chain) and the first
    cols = sorted(
        {table.columns.index((n, 0)) for n in table.scheduled if n != "beta2"}
        | {table.n_columns - 1}
    )
    fd_check(problem, table, state0, fwd.hypergradient, cols)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_batchnorm_and_dropout_are_exact(optimizer: str) -> None:
    problem, state0 = bn_dropout_problem(optimizer, steps=60, batch=24)
    table = bn_table(problem, optimizer)
    fwd = run_forward(problem, table, state0)
    bptt = run_bptt(problem, table, state0)
    assert fwd.hypergradient is not None and bptt.hypergradient is not None
    assert rel(fwd.hypergradient, bptt.hypergradient) <= 1e-6
    fd_check(problem, table, state0, fwd.hypergradient, list(range(table.n_columns)), 1e-5)
    # the running statistics moved and are part of the evaluated state
    assert not torch.equal(fwd.state[-1], state0[-1])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_both_tangent_methods_and_chunks_agree(optimizer: str) -> None:
    task = fmd.tasks.Digits(
        steps=40, batch_size=16, dtype=F64, optimizer=optimizer, grad_clip=0.05
    )
    problem, table, state0 = build_episode(task, schedules(optimizer, 3), seed=0)
    a = run_forward(problem, table, state0, method="jvp")
    b = run_forward(problem, table, state0, method="hvp")
    c = run_forward(problem, table, state0, method="hvp", chunk_size=2)
    d = run_forward(problem, table, state0, method="jvp", chunk_size=4)
    ref = run_bptt(problem, table, state0)
    assert ref.hypergradient is not None
    for r in (a, b, c, d):
        assert r.hypergradient is not None
        assert rel(r.hypergradient, ref.hypergradient) <= 1e-6


def test_inactive_columns_are_not_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_fmd.engine import _forward

    task = fmd.tasks.Digits(steps=20, batch_size=16, dtype=F64)
    problem, table, state0 = build_episode(task, {"lr": [0.1] * 4, "momentum": [0.9] * 2})
    seen: list[tuple[int, int]] = []
    original = _forward._push_hvp

    def spy(problem, state, h, t, batch, tangents, table, n_active, chunk):  # type: ignore[no-untyped-def]
        seen.append((t, tangents[0].shape[0]))
        assert tangents[0].shape[0] == n_active
        return original(problem, state, h, t, batch, tangents, table, n_active, chunk)

    monkeypatch.setattr(_forward, "_push_hvp", spy)
    run_forward(problem, table, state0)
    widths = dict(seen)
    # lr windows start at 0, 5, 10, 15; momentum at 0, 10
    assert widths[0] == 2 and widths[4] == 2 and widths[5] == 3 and widths[10] == 5
    assert widths[19] == 6


def test_run_episode_reports_hypergradient_per_window() -> None:
    task = fmd.tasks.Digits(steps=30, batch_size=16)
    res = fmd.run_episode(task, {"lr": [0.1, 0.05, 0.02], "momentum": [0.9]}, seed=2)
    assert res.hypergradient is not None
    assert [len(v) for v in res.hypergradient.values()] == [3, 1]
    assert res.steps == 30 and res.engine == "reverse" and not res.diverged
    again = fmd.run_episode(task, {"lr": [0.1, 0.05, 0.02], "momentum": [0.9]}, seed=2)
    assert again.hypergradient == res.hypergradient and again.val_loss == res.val_loss
    plain = fmd.run_episode(
        task, {"lr": [0.1, 0.05, 0.02], "momentum": [0.9]}, seed=2, hypergradient=False
    )
    assert plain.hypergradient is None and plain.val_loss == pytest.approx(res.val_loss, rel=1e-5)


def test_divergence_stops_the_episode() -> None:
    task = fmd.tasks.Digits(steps=200, batch_size=16)
    task.data().train_x[::7] = float("nan")  # a forced NaN in some training batches
    res = fmd.run_episode(task, {"lr": [0.1]}, seed=0)
    assert res.diverged and res.steps < 200
    assert res.hypergradient is None and res.val_loss == float("inf")

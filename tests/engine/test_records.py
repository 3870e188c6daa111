"""Reverse mode with every step recorded in the forward sweep (no step run again) equals the
checkpointed sweep bit for bit and reverse mode through the unrolled loop, in float64; SGD's
closed-form update vjp equals autograd's; records that do not fit the budget are not kept."""

from __future__ import annotations

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import InnerOptimizer, make_optimizer, run_bptt, run_reverse
from optuna_fmd.engine._common import state_nbytes
from optuna_fmd.episode import build_episode

from ._problems import bn_dropout_problem, bn_table, rel, schedules

F64 = torch.float64
PLENTY = 10**12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_closed_form_vjp_equals_autograd(nesterov: bool) -> None:
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (1,)]
    params, grads, state, p_bar, v_bar = (
        [torch.randn(s, generator=g, dtype=F64) for s in shapes] for _ in range(5)
    )
    hypers = {
        "lr": torch.tensor(0.07, dtype=F64),
        "momentum": torch.tensor(0.8, dtype=F64),
        "weight_decay": torch.tensor(0.03, dtype=F64),
    }
    sgd = make_optimizer("sgd", nesterov=nesterov)
    _, new_state = sgd.update(params, grads, state, hypers, 4)
    args = (params, grads, state, hypers, 4, new_state, p_bar, v_bar)
    closed = sgd.update_vjp(*args)
    generic = InnerOptimizer.update_vjp(sgd, *args)
    for a, b in zip(closed[:3], generic[:3], strict=True):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)
    assert closed[3].keys() == generic[3].keys()
    for name in hypers:
        torch.testing.assert_close(closed[3][name], generic[3][name], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_recorded_sweep_with_batchnorm_and_dropout(optimizer: str) -> None:
    problem, state0 = bn_dropout_problem(optimizer, steps=15)
    table = bn_table(problem, optimizer)
    ref = run_bptt(problem, table, state0)
    segments = run_reverse(problem, table, state0, checkpoint_every=4)
    recorded = run_reverse(problem, table, state0, memory_budget=PLENTY)
    assert ref.hypergradient is not None and segments.hypergradient is not None
    assert recorded.hypergradient is not None
    assert torch.equal(recorded.hypergradient, segments.hypergradient)
    assert rel(recorded.hypergradient, ref.hypergradient) <= 1e-6
    assert recorded.val_loss == segments.val_loss
    for a, b in zip(recorded.state, segments.state, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("optimizer,nesterov", [("sgd", True), ("adamw", False)])
def test_recorded_sweep_with_groups_and_clipping(optimizer: str, nesterov: bool) -> None:
    task = fmd.tasks.Digits(
        steps=12, batch_size=16, dtype=F64, optimizer=optimizer, nesterov=nesterov, grad_clip=0.05
    )
    head = "lr_head"
    groups = {head: ("lr", ("3.*",))}
    sched = {**schedules(optimizer, 2), head: [0.2 if optimizer == "sgd" else 2e-2, 1e-3]}
    problem, table, state0 = build_episode(task, sched, groups=groups, seed=1)
    assert problem.partitions is not None
    ref = run_bptt(problem, table, state0)
    recorded = run_reverse(problem, table, state0, memory_budget=PLENTY)
    assert ref.hypergradient is not None and recorded.hypergradient is not None
    assert rel(recorded.hypergradient, ref.hypergradient) <= 1e-6


def test_records_are_kept_only_when_they_fit() -> None:
    steps = 10
    task = fmd.tasks.Digits(steps=steps, batch_size=16, dtype=F64)
    problem, table, state0 = build_episode(task, schedules("sgd", 2), seed=0)
    calls: list[int] = []
    record_step = problem.record_step

    def counting(state, hypers, t, batch):  # type: ignore[no-untyped-def]
        calls.append(t)
        return record_step(state, hypers, t, batch)

    problem.record_step = counting  # type: ignore[method-assign]
    kept = run_reverse(problem, table, state0, memory_budget=PLENTY)
    assert calls == list(range(steps))
    calls.clear()
    # every state fits, their records (minibatches, gradients, graphs) do not: one record per
    # step on the way back, after the probe of step 0
    states_only = run_reverse(problem, table, state0, memory_budget=steps * state_nbytes(state0))
    assert calls == [0, *range(steps - 1, -1, -1)]
    assert kept.hypergradient is not None and states_only.hypergradient is not None
    assert torch.equal(kept.hypergradient, states_only.hypergradient)

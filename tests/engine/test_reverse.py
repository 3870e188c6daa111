"""Checkpointed reverse mode equals reverse mode through the unrolled loop and forward mode, in
float64 with fixed seeds, for every segment length; the memory plan and its errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import (
    HyperTable,
    run_bptt,
    run_forward,
    run_reverse,
)
from optuna_fmd.engine._reverse import plan_checkpoints, state_nbytes
from optuna_fmd.episode import build_episode

from ._problems import OPTIMIZERS, bn_dropout_problem, bn_table, rel, schedules

F64 = torch.float64
STEPS = 20


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("optimizer,nesterov", OPTIMIZERS)
def test_reverse_equals_bptt_and_forward(optimizer: str, nesterov: bool, k: int) -> None:
    task = fmd.tasks.Digits(
        steps=STEPS, batch_size=16, dtype=F64, optimizer=optimizer, nesterov=nesterov
    )
    problem, table, state0 = build_episode(task, schedules(optimizer, k), seed=1)
    rev = run_reverse(problem, table, state0)
    bptt = run_bptt(problem, table, state0)
    fwd = run_forward(problem, table, state0)
    assert rev.hypergradient is not None and bptt.hypergradient is not None
    assert fwd.hypergradient is not None
    assert rev.hypergradient.shape == (table.n_columns,)
    assert rel(rev.hypergradient, bptt.hypergradient) <= 1e-6
    assert rel(rev.hypergradient, fwd.hypergradient) <= 1e-6
    assert rev.val_loss == pytest.approx(bptt.val_loss, rel=1e-12)
    assert rev.val_accuracy == bptt.val_accuracy
    assert rev.steps_done == STEPS and not rev.diverged
    assert rev.train_loss == pytest.approx(fwd.train_loss, rel=1e-12)
    for a, b in zip(rev.state, fwd.state, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_unscheduled_hypers_and_uneven_windows() -> None:
    task = fmd.tasks.Digits(steps=17, batch_size=16, dtype=F64)
    sched = {"lr": [0.1, 0.07, 0.05, 0.02, 0.01], "momentum": [0.9, 0.5]}
    problem, table, state0 = build_episode(task, sched, seed=3)
    assert "weight_decay" not in table.scheduled
    rev = run_reverse(problem, table, state0, checkpoint_every=4)
    ref = run_bptt(problem, table, state0)
    assert rev.hypergradient is not None and ref.hypergradient is not None
    assert rev.hypergradient.shape == (7,)
    assert rel(rev.hypergradient, ref.hypergradient) <= 1e-6


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_batchnorm_and_dropout_every_segment_length(optimizer: str) -> None:
    problem, state0 = bn_dropout_problem(optimizer, steps=15)
    table = bn_table(problem, optimizer)
    ref = run_bptt(problem, table, state0)
    fwd = run_forward(problem, table, state0)
    assert ref.hypergradient is not None and fwd.hypergradient is not None
    results = [
        run_reverse(problem, table, state0, checkpoint_every=c)
        for c in (None, 1, 2, problem.steps, 100)  # 2 does not divide T = 15
    ]
    first = results[0].hypergradient
    assert first is not None
    assert rel(first, ref.hypergradient) <= 1e-6
    assert rel(first, fwd.hypergradient) <= 1e-6
    for r in results[1:]:
        # the same steps in the same order: bitwise the same, whatever the segment length
        assert r.hypergradient is not None and torch.equal(r.hypergradient, first)
        assert r.val_loss == results[0].val_loss
    # the running statistics moved and are part of the differentiated state
    assert not torch.equal(results[0].state[-1], state0[-1])


@dataclass(eq=False)
class NoisyDigits(fmd.tasks.Digits):
    """Digits with a random horizontal flip and Gaussian noise drawn from the given generator."""

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        noise = 0.05 * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x) + noise


def test_augmentation_is_replayed_exactly() -> None:
    sched = schedules("sgd", 3)
    task = NoisyDigits(steps=STEPS, batch_size=16, dtype=F64, augmentation=True)
    problem, table, state0 = build_episode(task, sched, seed=2)
    plain_task = fmd.tasks.Digits(steps=STEPS, batch_size=16, dtype=F64)
    plain_problem, _, _ = build_episode(plain_task, sched, seed=2)
    assert not torch.equal(problem.batch_at(5)[0], plain_problem.batch_at(5)[0])
    ref = run_bptt(problem, table, state0)
    assert ref.hypergradient is not None
    for c in (None, 1, 6):
        rev = run_reverse(problem, table, state0, checkpoint_every=c)
        assert rev.hypergradient is not None
        assert rel(rev.hypergradient, ref.hypergradient) <= 1e-6


def test_step_count_matches_the_plan() -> None:
    task = fmd.tasks.Digits(steps=STEPS, batch_size=16, dtype=F64)
    problem, table, state0 = build_episode(task, {"lr": [0.1, 0.05]}, seed=0)
    calls: list[int] = []

    def counted(method):  # type: ignore[no-untyped-def]
        def counting(state, hypers, t, batch):  # type: ignore[no-untyped-def]
            calls.append(t)
            return method(state, hypers, t, batch)

        return counting

    problem.step_plain = counted(problem.step_plain)  # type: ignore[method-assign]
    problem.record_step = counted(problem.record_step)  # type: ignore[method-assign]
    for c in (1, 3, 6, STEPS):
        calls.clear()
        run_reverse(problem, table, state0, checkpoint_every=c)
        plan = plan_checkpoints(STEPS, state_nbytes(state0), checkpoint_every=c)
        # forward pass + recomputation + one recorded step (then its vjp) per step
        assert len(calls) == 2 * STEPS + plan.recomputed_steps
    assert plan_checkpoints(STEPS, 1, checkpoint_every=6).recomputed_steps == 3 * 5
    # every step recorded in the forward pass when the records fit the budget: nothing more
    calls.clear()
    run_reverse(problem, table, state0, memory_budget=10**12)
    assert calls == list(range(STEPS))


def test_plan_default_and_memory_budget() -> None:
    state_bytes = 1000
    for steps in (1, 2, 10, 99, 100, 101, 1000):
        plan = plan_checkpoints(steps, state_bytes)
        assert plan.every == math.ceil(math.sqrt(steps))
        assert plan.stored_states == math.ceil(steps / plan.every) + plan.every - 1
        assert plan.stored_states <= 2 * math.sqrt(steps) + 1
        assert plan.stored_bytes == plan.stored_states * state_bytes
    # everything fits: no recomputation
    everything = plan_checkpoints(100, state_bytes, memory_budget=100 * state_bytes)
    assert everything.recomputed_steps == 0
    # a budget in between: the fitting plan with the least recomputation
    budget = 30 * state_bytes
    plan = plan_checkpoints(100, state_bytes, memory_budget=budget)
    assert plan.stored_bytes <= budget
    every = [plan_checkpoints(100, state_bytes, checkpoint_every=c) for c in range(1, 101)]
    best = min(p.recomputed_steps for p in every if p.stored_bytes <= budget)
    assert plan.recomputed_steps == best
    assert plan.recomputed_steps < plan_checkpoints(100, state_bytes).recomputed_steps
    # the least memory that works: 19 states at T = 100
    assert plan_checkpoints(100, state_bytes, memory_budget=19_000).stored_states == 19
    with pytest.raises(ValueError, match=r"`memory_budget` must be at least 19000 bytes"):
        plan_checkpoints(100, state_bytes, memory_budget=18_999)


def test_run_with_memory_budget() -> None:
    task = fmd.tasks.Digits(steps=STEPS, batch_size=16, dtype=F64)
    problem, table, state0 = build_episode(task, schedules("sgd", 3), seed=0)
    size = state_nbytes(state0)
    ref = run_reverse(problem, table, state0)
    assert ref.hypergradient is not None
    for budget in (9 * size, 12 * size, 10**12):
        r = run_reverse(problem, table, state0, memory_budget=budget)
        assert r.hypergradient is not None and torch.equal(r.hypergradient, ref.hypergradient)
    with pytest.raises(ValueError, match="memory_budget"):
        run_reverse(problem, table, state0, memory_budget=size)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"checkpoint_every": 0}, r"`checkpoint_every` must be a positive int or None, but got 0"),
        ({"checkpoint_every": True}, r"`checkpoint_every` must be a positive int"),
        ({"checkpoint_every": 2.5}, r"`checkpoint_every` must be a positive int"),
        ({"memory_budget": -1}, r"`memory_budget` must be a positive number of bytes"),
        ({"memory_budget": float("nan")}, r"`memory_budget` must be a positive number"),
        ({"checkpoint_every": 2, "memory_budget": 10**9}, r"at most one of `checkpoint_every`"),
    ],
)
def test_arguments_are_validated(kwargs: dict, match: str) -> None:
    task = fmd.tasks.Digits(steps=4, batch_size=16)
    problem, table, state0 = build_episode(task, {"lr": [0.1]})
    with pytest.raises(ValueError, match=match):
        run_reverse(problem, table, state0, **kwargs)


def test_divergence_stops_the_run() -> None:
    task = fmd.tasks.Digits(steps=30, batch_size=16)
    problem, table, state0 = build_episode(task, {"lr": [1e12]}, seed=0)
    seen: list[int] = []
    rev = run_reverse(problem, table, state0, progress=lambda t, loss: seen.append(t))
    fwd = run_forward(problem, table, state0)
    assert rev.diverged and rev.hypergradient is None
    assert rev.steps_done < 30 and rev.steps_done == fwd.steps_done
    assert seen == list(range(rev.steps_done))
    assert not math.isfinite(rev.train_loss)


def test_progress_and_no_columns() -> None:
    task = fmd.tasks.Digits(steps=6, batch_size=16, dtype=F64)
    problem, _, state0 = build_episode(task, {"lr": [0.1]}, seed=0)
    table = HyperTable({n: [0.1] for n in ("lr", "momentum", "weight_decay")}, [], 6)
    seen: list[int] = []
    res = run_reverse(problem, table, state0, progress=lambda t, loss: seen.append(t))
    assert seen == list(range(6))
    assert res.hypergradient is not None and res.hypergradient.shape == (0,)

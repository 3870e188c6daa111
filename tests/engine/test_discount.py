"""Discounted tangents: forward mode, reverse mode (every way it runs) and reverse mode through
the unrolled loop with each step's input gradient scaled (their definition) agree in float64;
a discount of 1 is the exact hypergradient to the bit; bad discounts are refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import Snapshot, run_bptt, run_forward, run_reverse
from optuna_fmd.episode import build_episode

from ._problems import bn_dropout_problem, bn_table, rel, schedules

F64 = torch.float64
STEPS = 24
GROUPS = {"lr_last": ("lr", ("3.*",))}


pytestmark = pytest.mark.usefixtures("one_thread")


def _episode(optimizer: str) -> tuple:
    task = fmd.tasks.Digits(steps=STEPS, batch_size=16, dtype=F64, optimizer=optimizer)
    sched = dict(schedules(optimizer, 3))
    sched["lr_last"] = [2 * v for v in sched["lr"][:2]]
    return build_episode(task, sched, seed=1, groups=GROUPS)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("discount", [0.9, 0.5])
def test_every_engine_agrees_with_the_definition(optimizer: str, discount: float) -> None:
    problem, table, state0 = _episode(optimizer)
    ref = run_bptt(problem, table, state0, discount=discount)
    exact = run_bptt(problem, table, state0)
    assert ref.hypergradient is not None and exact.hypergradient is not None
    # the discount moves the hypergradient, not the trajectory
    assert ref.val_loss == exact.val_loss
    assert rel(ref.hypergradient, exact.hypergradient) > 1e-3
    results = {
        "hvp": run_forward(problem, table, state0, method="hvp", discount=discount),
        "jvp": run_forward(problem, table, state0, method="jvp", discount=discount),
        "reverse": run_reverse(problem, table, state0, discount=discount),
        "reverse, segments": run_reverse(
            problem, table, state0, checkpoint_every=5, discount=discount
        ),
        "reverse, records": run_reverse(
            problem, table, state0, memory_budget=1e9, discount=discount
        ),
    }
    for name, res in results.items():
        assert res.hypergradient is not None, name
        assert rel(res.hypergradient, ref.hypergradient) <= 1e-8, name
        assert res.val_loss == pytest.approx(ref.val_loss, rel=1e-12), name


def test_batchnorm_state_is_discounted_too() -> None:
    problem, state0 = bn_dropout_problem("sgd", steps=10)
    table = bn_table(problem, "sgd")
    ref = run_bptt(problem, table, state0, discount=0.7)
    assert ref.hypergradient is not None
    for res in (
        run_forward(problem, table, state0, discount=0.7),
        run_reverse(problem, table, state0, checkpoint_every=3, discount=0.7),
    ):
        assert res.hypergradient is not None
        assert rel(res.hypergradient, ref.hypergradient) <= 1e-8


def test_a_small_discount_keeps_only_the_last_steps() -> None:
    """At discount 1e-6 a window's term survives only through the steps it is active in at the
    end: the windows that end before the last step weigh at most ~1e-6 of the last one."""
    problem, table, state0 = _episode("sgd")
    hg = run_reverse(problem, table, state0, discount=1e-6).hypergradient
    assert hg is not None
    last = [j for j, (n, k) in enumerate(table.columns) if n == "lr" and k == 2]
    early = [j for j, (n, k) in enumerate(table.columns) if n == "lr" and k < 2]
    assert float(hg[last].abs().min()) > 0
    assert float(hg[early].abs().max()) <= 1e-4 * float(hg[last].abs().min())


@pytest.mark.parametrize("engine", ["forward", "reverse", "bptt"])
def test_a_discount_of_one_is_the_exact_hypergradient_to_the_bit(engine: str) -> None:
    task = fmd.tasks.Digits(steps=12, batch_size=16, dtype=F64)
    sched = {"lr": [0.1, 0.05], "momentum": [0.9]}
    exact = fmd.run_episode(task, sched, options=fmd.EngineOptions(engine))
    one = fmd.run_episode(task, sched, options=fmd.EngineOptions(engine, discount=1.0))
    assert exact.hypergradient is not None and one.hypergradient is not None
    for name in exact.hypergradient:
        assert exact.hypergradient[name] == one.hypergradient[name]


def test_episodes_pass_the_discount_to_the_engine() -> None:
    task = fmd.tasks.Digits(steps=12, batch_size=16, dtype=F64)
    sched = {"lr": [0.1, 0.05], "momentum": [0.9]}
    fwd = fmd.run_episode(task, sched, options=fmd.EngineOptions("forward", discount=0.8))
    rev = fmd.run_episode(task, sched, options=fmd.EngineOptions("reverse", discount=0.8))
    exact = fmd.run_episode(task, sched, options=fmd.EngineOptions("reverse"))
    assert fwd.hypergradient is not None and rev.hypergradient is not None
    assert exact.hypergradient is not None
    for name in fwd.hypergradient:
        a, b = torch.tensor(fwd.hypergradient[name]), torch.tensor(rev.hypergradient[name])
        assert rel(a, b) <= 1e-8
    assert fwd.hypergradient["lr"] != exact.hypergradient["lr"]


@pytest.mark.parametrize("engine", ["forward", "reverse"])
def test_discounted_episodes_resume_bitwise_and_refuse_other_discounts(engine: str) -> None:
    task = fmd.tasks.Digits(steps=12, batch_size=16, dtype=F64)
    sched = {"lr": [0.1, 0.05]}
    snaps: list[Snapshot] = []
    every = 3 if engine == "reverse" else None
    options = fmd.EngineOptions(
        engine, reverse=fmd.ReverseOptions(checkpoint_every=every), discount=0.8
    )
    taking = fmd.SnapshotOptions(every=3, on_snapshot=snaps.append)
    full = fmd.run_episode(task, sched, options=options, snapshots=taking)
    assert len(snaps) >= 2
    for snap in snaps:
        resume = fmd.SnapshotOptions(resume=snap)
        again = fmd.run_episode(task, sched, options=options, snapshots=resume)
        assert again.hypergradient == full.hypergradient
        assert again.val_loss == full.val_loss
    other = dataclasses.replace(options, discount=0.9)
    with pytest.raises(ValueError, match="belongs to another run"):
        fmd.run_episode(task, sched, options=other, snapshots=fmd.SnapshotOptions(resume=snaps[0]))


@pytest.mark.parametrize("discount", [0, 0.0, -0.5, 1.5, float("nan"), True, "0.9"])
def test_bad_discounts_are_refused_before_training(discount: object) -> None:
    task = fmd.tasks.Digits(steps=5, batch_size=16)
    with pytest.raises(ValueError, match="discount"):
        fmd.run_episode(
            task,
            {"lr": [0.1]},
            options=fmd.EngineOptions(discount=discount),  # type: ignore[arg-type]
        )


def test_fds_and_the_compiled_path_refuse_a_discount() -> None:
    task = fmd.tasks.Digits(steps=5, batch_size=16, dtype=F64)
    with pytest.raises(ValueError, match="FDS"):
        fmd.run_episode(task, {"lr": [0.1]}, options=fmd.EngineOptions("fds", discount=0.9))
    problem, table, state0 = build_episode(task, {"lr": [0.1]})
    with pytest.raises(ValueError, match="exact tangents"):
        run_forward(problem, table, state0, compile=True, discount=0.9)

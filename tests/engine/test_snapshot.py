"""Snapshots: a run resumed from any snapshot (after a round trip through bytes) ends bitwise
where the uninterrupted run ends, in every engine, in float64 with fixed seeds; mismatching
snapshots are refused; snapshot size does not grow with the horizon."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import (
    EngineResult,
    HyperTable,
    InnerProblem,
    Snapshot,
    Snapshots,
    run_forward,
    run_plain,
    run_reverse,
)
from optuna_fmd.engine._reverse import state_nbytes
from optuna_fmd.episode import build_episode

from ._problems import bn_dropout_problem, bn_table, schedules

F64 = torch.float64
Run = Callable[..., EngineResult]


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same(a: EngineResult, b: EngineResult) -> None:
    assert a.val_loss == b.val_loss
    assert a.val_accuracy == b.val_accuracy
    assert a.train_loss == b.train_loss
    assert a.steps_done == b.steps_done and a.diverged == b.diverged
    if b.hypergradient is None:
        assert a.hypergradient is None
    else:
        assert a.hypergradient is not None and torch.equal(a.hypergradient, b.hypergradient)
    assert all(torch.equal(x, y) for x, y in zip(a.state, b.state, strict=True))


def collect(run: Run, every: int) -> list[Snapshot]:
    saved: list[Snapshot] = []
    run(snapshots=Snapshots(every=every, save=saved.append, fingerprint="run"))
    return saved


def resumed(run: Run, snap: Snapshot | bytes, every: int = 1000) -> EngineResult:
    back = Snapshot.from_bytes(snap if isinstance(snap, bytes) else snap.to_bytes())
    return run(snapshots=Snapshots(every=every, save=print, resume=back, fingerprint="run"))


def bn_run(engine: str, optimizer: str, steps: int, **kw: object) -> Run:
    problem, state0 = bn_dropout_problem(optimizer, steps=steps)
    table = bn_table(problem, optimizer)
    fn = {"plain": run_plain, "forward": run_forward, "reverse": run_reverse}[engine]
    return partial(fn, problem, table, state0, **kw)


def digits_run(optimizer: str, steps: int, method: str) -> Run:
    task = fmd.tasks.Digits(steps=steps, batch_size=16, dtype=F64, optimizer=optimizer)
    problem, table, state0 = build_episode(task, schedules(optimizer, 3), seed=1)
    return partial(run_forward, problem, table, state0, method=method)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("engine", ["plain", "forward-jvp", "forward-hvp"])
def test_plain_and_forward_resume_bitwise_from_every_snapshot(engine: str, optimizer: str) -> None:
    if engine == "plain":
        run = bn_run("plain", optimizer, 9)
    elif engine == "forward-jvp":  # BatchNorm and dropout: running statistics and masks
        run = bn_run("forward", optimizer, 9, method="jvp")
    else:
        run = digits_run(optimizer, 9, "hvp")
    whole = run()
    snaps = collect(run, every=3)
    assert [s.step for s in snaps] == [3, 6]
    assert all(s.engine == engine.split("-")[0] and s.fingerprint == "run" for s in snaps)
    for snap in snaps:
        assert_same(resumed(run, snap), whole)
    # a resumed run takes its snapshots on the same schedule, and they resume just as well
    again: list[Snapshot] = []
    back = Snapshot.from_bytes(snaps[0].to_bytes())
    run(snapshots=Snapshots(every=3, save=again.append, resume=back, fingerprint="run"))
    assert [s.step for s in again] == [6]
    assert_same(resumed(run, again[-1]), whole)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "sf-adamw"])
@pytest.mark.parametrize("checkpoint_every", [1, 3, 5])
def test_reverse_resume_bitwise_in_both_sweeps(optimizer: str, checkpoint_every: int) -> None:
    run = bn_run("reverse", optimizer, 13, checkpoint_every=checkpoint_every)
    whole = run()
    snaps = collect(run, every=3)
    phases = [s.phase for s in snaps]
    assert "forward" in phases and "backward" in phases
    assert phases == sorted(phases, key=["forward", "backward"].index)
    for snap in snaps:
        assert snap.step % checkpoint_every == 0
        assert len(snap.checkpoints) == snap.step // checkpoint_every
        assert_same(resumed(run, snap), whole)


def test_reverse_snapshots_follow_the_schedule() -> None:
    # T = 13, c = 3, every 5: forwards, boundaries 3, 6, 9, 12 (multiples 5, 10 passed at 6 and
    # 12); backwards, boundaries 12, 9, 6, 3 at progress 26 - 12 = 14, 17, 20, 23 (15 and 20)
    run = bn_run("reverse", "sgd", 13, checkpoint_every=3)
    snaps = collect(run, every=5)
    assert [(s.phase, s.step) for s in snaps] == [
        ("forward", 6),
        ("forward", 12),
        ("backward", 9),
        ("backward", 6),
    ]
    assert [s.progress for s in snaps] == [6, 12, 17, 20]  # grows while the step goes down
    assert collect(run, every=100) == []


@pytest.mark.parametrize("engine", ["forward", "reverse"])
def test_crashed_run_resumes_from_its_last_snapshot(engine: str) -> None:
    kw = {"checkpoint_every": 2} if engine == "reverse" else {"method": "jvp"}
    run = bn_run(engine, "adam", 13, **kw)
    whole = run()
    stored: list[bytes] = []

    class Crash(Exception):
        pass

    def save(snap: Snapshot) -> None:
        stored.append(snap.to_bytes())
        if len(stored) == 3:
            raise Crash

    with pytest.raises(Crash):
        run(snapshots=Snapshots(every=2, save=save, fingerprint="run"))
    assert len(stored) == 3
    assert_same(resumed(run, stored[-1], every=2), whole)


def test_mismatching_snapshots_are_refused() -> None:
    plain = bn_run("plain", "sgd", 12)
    forward = bn_run("forward", "sgd", 12, method="jvp")
    snap = collect(forward, every=4)[0]
    with pytest.raises(ValueError, match=r"its engine is 'forward', but this run's is 'plain'"):
        resumed(plain, snap)
    with pytest.raises(ValueError, match=r"its fingerprint is 'run', but this run's is 'other'"):
        forward(snapshots=Snapshots(every=4, save=print, resume=snap, fingerprint="other"))
    problem, state0 = bn_dropout_problem("sgd", steps=12)
    lr_only = HyperTable(
        {n: [v] * 3 if n == "lr" else [v] for n, v in problem.optimizer.defaults.items()},
        ["lr"],
        12,
    )
    with pytest.raises(ValueError, match=r"its number of columns is 6, but this run's is 3"):
        resumed(partial(run_forward, problem, lr_only, state0, method="jvp"), snap)
    wider = [torch.cat([s, s]) if s.dim() else s for s in state0]
    with pytest.raises(ValueError, match=r"its state layout \(shape, dtype\) is"):
        resumed(partial(run_forward, problem, bn_table(problem, "sgd"), wider), snap)
    reverse = collect(bn_run("reverse", "sgd", 12, checkpoint_every=3), every=4)[0]
    with pytest.raises(ValueError, match=r"its segment length `checkpoint_every` is 3, but .* 4"):
        resumed(bn_run("reverse", "sgd", 12, checkpoint_every=4), reverse)
    with pytest.raises(ValueError, match=r"`data` is not a snapshot"):
        Snapshot.from_bytes(b"not a snapshot")


@pytest.mark.parametrize("every", [0, -2, True, 1.5])
def test_every_must_be_a_positive_int(every: object) -> None:
    with pytest.raises(ValueError, match=rf"`every` must be a positive int, but got {every!r}"):
        Snapshots(every=every, save=print)  # type: ignore[arg-type]


def test_forward_snapshot_is_state_plus_tangents_whatever_the_horizon() -> None:
    sizes = []
    for steps in (12, 36):
        problem: InnerProblem
        problem, state0 = bn_dropout_problem("adam", steps=steps)
        table = bn_table(problem, "adam")
        last = collect(partial(run_forward, problem, table, state0, method="jvp"), every=3)[-1]
        assert last.tangents is not None and last.tangents[0].shape[0] == table.n_columns
        payload = state_nbytes(last.state) + state_nbytes(last.tangents)
        size = len(last.to_bytes())
        assert payload < size < payload + 16_000
        sizes.append(size)
    assert abs(sizes[0] - sizes[1]) < 64

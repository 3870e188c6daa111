"""Per-layer-group schedules: exact in every engine, validated up front, usable in a study."""

from __future__ import annotations

import optuna
import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import run_bptt, run_forward, run_plain, run_reverse
from optuna_fmd.episode import build_episode

F64 = torch.float64
GROUPS = {"lr_head": ("lr", ("3.*",)), "momentum_first": ("momentum", ("1.*",))}
SCHEDULES = {
    "lr": [0.1, 0.05],
    "lr_head": [0.2, 0.01, 0.05],
    "momentum": [0.9],
    "momentum_first": [0.5, 0.7],
}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_group_schedules_are_exact_in_every_engine(optimizer: str) -> None:
    task = fmd.tasks.Digits(steps=30, batch_size=16, dtype=F64, optimizer=optimizer)
    if optimizer == "sgd":
        groups, schedules = GROUPS, SCHEDULES
    else:
        groups = {"lr_head": ("lr", ("3.*",)), "beta1_first": ("beta1", ("1.*",))}
        schedules = {"lr": [1e-2, 5e-3], "lr_head": [2e-2, 1e-3, 5e-3], "beta1_first": [0.8, 0.7]}
    problem, table, state0 = build_episode(task, schedules, groups=groups)
    assert problem.partitions is not None and len(problem.partitions) == 2
    ref = run_bptt(problem, table, state0)
    assert ref.hypergradient is not None
    for res in (
        run_forward(problem, table, state0, method="hvp"),
        run_forward(problem, table, state0, method="jvp"),
        run_reverse(problem, table, state0, checkpoint_every=4),
    ):
        assert res.hypergradient is not None
        assert rel(res.hypergradient, ref.hypergradient) <= 1e-6
    # central differences on a group column
    j = table.columns.index(("lr_head", 1))
    eps = 1e-7 * table.values["lr_head"][1]
    vals = []
    for sign in (1.0, -1.0):
        values = {n: list(v) for n, v in table.values.items()}
        values["lr_head"][1] += sign * eps
        shifted = type(table)(values, table.scheduled, table.steps)
        vals.append(run_plain(problem, shifted, state0).val_loss)
    fd = (vals[0] - vals[1]) / (2 * eps)
    assert abs(fd - float(ref.hypergradient[j])) <= 1e-3 * abs(fd)


def test_a_group_changes_only_its_parameters() -> None:
    task = fmd.tasks.Digits(steps=10, batch_size=16, dtype=F64)
    plain = fmd.run_episode(task, {"lr": [0.1]}, hypergradient=False)
    same = fmd.run_episode(
        task,
        {"lr": [0.1], "lr_head": [0.1]},
        groups={"lr_head": ("lr", ("3.*",))},
        hypergradient=False,
    )
    other = fmd.run_episode(
        task,
        {"lr": [0.1], "lr_head": [0.3]},
        groups={"lr_head": ("lr", ("3.*",))},
        hypergradient=False,
    )
    assert same.val_loss == plain.val_loss and other.val_loss != plain.val_loss


@pytest.mark.parametrize(
    "groups,schedules,match",
    [
        ({"g": ("nope", ("3.*",))}, {"g": [0.1]}, r"sets `nope`, which is not a hyperparameter"),
        ({"g": ("lr", ("blocks.*",))}, {"g": [0.1]}, r"matches no parameter with \['blocks.\*'\]"),
        ({"g": ("lr", ("3.*",))}, {"lr": [0.1]}, r"group `g` has no schedule"),
        ({"lr": ("lr", ("3.*",))}, {"lr": [0.1]}, r"must not be named like a hyperparameter"),
    ],
)
def test_bad_groups_are_refused(groups: dict, schedules: dict, match: str) -> None:
    task = fmd.tasks.Digits(steps=10, batch_size=16)
    with pytest.raises(ValueError, match=match):
        fmd.run_episode(task, schedules, groups=groups)


def test_space_groups_and_schedule_checks() -> None:
    space = fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True),
            "lr_head": fmd.Schedule(
                windows=2, low=1e-3, high=1.0, log=True, hyper="lr", params="3.*"
            ),
        }
    )
    assert space.groups() == {"lr_head": ("lr", ("3.*",))}
    assert space.hypers() == {"lr": "lr", "lr_head": "lr"}
    with pytest.raises(ValueError, match="`params` must be a glob pattern"):
        fmd.Schedule(windows=2, low=0.0, high=1.0, params=("",))
    with pytest.raises(ValueError, match="`hyper` must be a hyperparameter name"):
        fmd.Schedule(windows=2, low=0.0, high=1.0, hyper="")


def test_study_with_over_100_group_columns() -> None:
    """One lr schedule per parameter tensor of an MLP: 8 groups x 13 windows = 104 columns."""
    task = fmd.tasks.Digits(model="mlp-32-32-32", steps=52, batch_size=32)
    names = [n for n, _ in task.make_model(0).named_parameters()]
    space = fmd.ScheduleSpace(
        {
            f"lr_{n.replace('.', '_')}": fmd.Schedule(
                windows=13, low=1e-3, high=1.0, log=True, init=0.05, hyper="lr", params=n
            )
            for n in names
        }
    )
    assert len(names) == 8 and space.n_params == 104
    objective = fmd.HypergradientObjective(task, space)
    study = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0, outer="sign"))
    study.optimize(objective, n_trials=3)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    assert all(len(t.user_attrs["hypergradient"]) == 104 for t in done)
    assert done[0].user_attrs["engine"] == "reverse"
    assert done[1].params != done[0].params

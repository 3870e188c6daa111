"""Class weights and label smoothing: the loss they define, and their hypergradients in every
engine against reverse mode through the unrolled loop and central differences (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import optuna_fmd as fmd
from optuna_fmd.engine import run_bptt, run_forward, run_plain, run_reverse
from optuna_fmd.engine._loss import LossSide, make_loss_side
from optuna_fmd.episode import build_episode

from ._problems import bn_dropout_problem, rel
from .test_forward import fd_check

F64 = torch.float64
STEPS = 30
# Two class groups, a per-window weight of every other class, label smoothing, and the lr.
SCHEDULES = {
    "lr": [0.1, 0.05],
    "class_weight": [1.5, 0.7, 1.2],
    "label_smoothing": [0.05, 0.2],
    "cw_low": [2.0, 0.5],
    "cw_seven": [0.3],
}
GROUPS = {"cw_low": ("class_weight", ("[0-2]",)), "cw_seven": ("class_weight", ("7",))}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_loss_is_weighted_smoothed_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    out = torch.randn(12, 4, generator=g, dtype=F64)
    y = torch.randint(0, 4, (12,), generator=g)
    w = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=F64)
    eps = 0.1
    # hyper vector: [lr, w0, w1, w3, eps]; class 2 is in no group and keeps weight 1
    side = LossSide((1, 2, None, 3), 4)
    h = torch.tensor([0.1, 0.5, 2.0, 3.0, eps], dtype=F64)
    per = nn.functional.cross_entropy(out, y, reduction="none", label_smoothing=eps)
    assert float(side.loss(out, y, h)) == pytest.approx(float((w[y] * per).mean()), rel=1e-14)
    plain = LossSide((None,) * 4, None)
    assert float(plain.loss(out, y, h)) == pytest.approx(
        float(nn.functional.cross_entropy(out, y)), rel=1e-14
    )


def test_class_groups_map_classes_to_columns_and_the_last_group_wins() -> None:
    names = ["lr", "momentum", "class_weight", "label_smoothing", "a", "b"]
    groups = {"a": ("class_weight", ("[0-4]",)), "b": ("class_weight", ("4", "9"))}
    side = make_loss_side(names, groups, 10)
    assert side is not None
    assert side.weights == (4, 4, 4, 4, 5, 2, 2, 2, 2, 5)
    assert side.smoothing == 3
    assert make_loss_side(["lr", "momentum"], None, 10) is None


@pytest.mark.parametrize(
    "names,groups,n_classes,match",
    [
        (["lr", "class_weight"], None, None, "classification task"),
        (["lr", "x"], {"x": ("class_weight", ("12",))}, 10, "matches no class"),
        (["lr", "x"], {"x": ("label_smoothing", ("1",))}, 10, "only `class_weight`"),
    ],
)
def test_bad_loss_side_inputs_raise(names: list, groups: dict, n_classes: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_loss_side(names, groups, n_classes)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_engine_agrees_with_bptt_and_central_differences(optimizer: str) -> None:
    task = fmd.tasks.Digits(steps=STEPS, batch_size=16, dtype=F64, optimizer=optimizer)
    sched = dict(SCHEDULES, lr=[0.1, 0.05] if optimizer == "sgd" else [3e-3, 2e-3])
    problem, table, state0 = build_episode(task, sched, seed=2, groups=GROUPS)
    assert problem.loss_side is not None
    bptt = run_bptt(problem, table, state0)
    assert bptt.hypergradient is not None
    results = {
        "hvp": run_forward(problem, table, state0, method="hvp"),
        "jvp": run_forward(problem, table, state0, method="jvp"),
        "reverse": run_reverse(problem, table, state0),
        "reverse, segments": run_reverse(problem, table, state0, checkpoint_every=7),
    }
    for name, res in results.items():
        assert res.hypergradient is not None, name
        assert rel(res.hypergradient, bptt.hypergradient) <= 1e-8, name
        assert res.val_loss == pytest.approx(bptt.val_loss, rel=1e-12), name
    loss_columns = [j for j, (n, _) in enumerate(table.columns) if n != "lr"]
    assert all(abs(float(bptt.hypergradient[j])) > 0 for j in loss_columns)
    fd_check(problem, table, state0, bptt.hypergradient, loss_columns, eps_rel=1e-6)


def test_loss_hypers_with_batchnorm_and_dropout() -> None:
    """The jvp path (BatchNorm statistics rule out the hvp one) and reverse mode, with a class
    weight per class of a 3-class problem."""
    problem, state0 = bn_dropout_problem("sgd", steps=12)
    names = ["lr", "momentum", "weight_decay", "class_weight", "label_smoothing"]
    problem.loss_side = make_loss_side(names, None, 3)
    values = {
        "lr": [0.1],
        "momentum": [0.9],
        "weight_decay": [0.0],
        "class_weight": [1.0, 2.0, 0.5],
        "label_smoothing": [0.1, 0.0],
    }
    table = fmd.engine.HyperTable(values, ["lr", "class_weight", "label_smoothing"], 12)
    ref = run_bptt(problem, table, state0)
    assert ref.hypergradient is not None
    for res in (run_forward(problem, table, state0), run_reverse(problem, table, state0)):
        assert res.hypergradient is not None
        assert rel(res.hypergradient, ref.hypergradient) <= 1e-8


def test_no_loss_hyper_leaves_training_bitwise_unchanged() -> None:
    task = fmd.tasks.Digits(steps=10, batch_size=16, dtype=F64)
    problem, table, state0 = build_episode(task, {"lr": [0.1]}, seed=0)
    assert problem.loss_side is None
    ones, _, _ = build_episode(task, {"lr": [0.1], "class_weight": [1.0]}, seed=0)
    a = run_plain(problem, table, state0)
    table_ones = fmd.engine.HyperTable(
        {**table.values, "class_weight": [1.0]}, ["lr", "class_weight"], 10
    )
    b = run_plain(ones, table_ones, state0)
    # the weighted loss at weight 1 is cross-entropy up to rounding; the plain path is untouched
    assert a.val_loss == pytest.approx(b.val_loss, rel=1e-10)


def test_the_fds_reference_refuses_loss_hypers() -> None:
    task = fmd.tasks.Digits(steps=5, batch_size=16, dtype=F64)
    with pytest.raises(ValueError, match="class weights or label smoothing"):
        fmd.run_episode(
            task, {"lr": [0.1], "label_smoothing": [0.1]}, options=fmd.EngineOptions("fds")
        )


def test_unknown_schedule_names_both_kinds_of_hyper() -> None:
    task = fmd.tasks.Digits(steps=5, batch_size=16)
    with pytest.raises(ValueError, match="label_smoothing"):
        fmd.run_episode(task, {"lr": [0.1], "smoothing": [0.1]})

"""evaluate_schedule: retrain on train+val, score on test; checked against torch.optim.SGD."""

from __future__ import annotations

import statistics

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import window_index
from optuna_fmd.evaluation import build_final_training
from optuna_fmd.tasks import _vision


@pytest.fixture(scope="module")
def digits() -> fmd.tasks.Digits:
    return fmd.tasks.Digits(steps=30, batch_size=32, dtype=torch.float64)


def _torch_reference(
    task: fmd.tasks.Task, lrs: list[float], seed: int, steps: int
) -> tuple[float, float]:
    """The same run written as an idiomatic torch.optim.SGD loop; (test loss, test accuracy)."""
    problem, _, _ = build_final_training(task, {"lr": lrs}, seed=seed, steps=steps)
    model = task.make_model(seed).train()
    hyp = task.fixed_hypers()
    opt = torch.optim.SGD(
        model.parameters(), lr=lrs[0], momentum=hyp["momentum"], weight_decay=hyp["weight_decay"]
    )
    for t in range(steps):
        for group in opt.param_groups:
            group["lr"] = lrs[window_index(t, steps, len(lrs))]
        x, y = problem.batch_at(t)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    data = task.data()
    assert data.test_x is not None and data.test_y is not None
    with torch.no_grad():
        out = model.eval()(data.test_x)
    loss = float(torch.nn.functional.cross_entropy(out, data.test_y))
    return loss, float((out.argmax(1) == data.test_y).double().mean())


def test_matches_a_torch_sgd_loop_on_train_plus_val(digits: fmd.tasks.Digits) -> None:
    lrs = [0.2, 0.1, 0.05]
    res = fmd.evaluate_schedule(digits, {"lr": lrs}, seeds=(0, 1), steps=45)
    assert res.steps == 45 and len(res.per_seed) == 2
    for run in res.per_seed:
        loss, acc = _torch_reference(digits, lrs, run.seed, 45)
        assert run.test_loss == pytest.approx(loss, rel=1e-9)
        assert run.test_accuracy == pytest.approx(acc)
    losses = [r.test_loss for r in res.per_seed]
    assert res.test_loss == pytest.approx(sum(losses) / 2)
    assert res.test_loss_std == pytest.approx(abs(losses[0] - losses[1]) / 2**0.5)


def test_uses_the_whole_training_split(digits: fmd.tasks.Digits) -> None:
    problem, table, _ = build_final_training(digits, {"lr": [0.1, 0.05]}, seed=0, steps=60)
    n = digits.data().train_x.shape[0]
    assert problem.batch_at.x.shape[0] == n  # type: ignore[attr-defined]
    test_x = digits.data().test_x
    assert test_x is not None
    assert sum(b[0].shape[0] for b in problem.val_batches) == test_x.shape[0]
    # the two windows stretch over the longer horizon: 30 steps each
    assert [table.window("lr", t) for t in (0, 29, 30, 59)] == [0, 0, 1, 1]


def test_is_deterministic_and_learns(digits: fmd.tasks.Digits) -> None:
    sched = {"lr": fmd.baselines.cosine(0.2, 3), "momentum": [0.9]}
    a = fmd.evaluate_schedule(digits, sched, seeds=(0, 2))
    b = fmd.evaluate_schedule(digits, sched, seeds=(0, 2))
    for x, y in zip(a.per_seed, b.per_seed, strict=True):
        assert (x.test_loss, x.test_accuracy, x.train_loss) == (
            y.test_loss,
            y.test_accuracy,
            y.train_loss,
        )
    assert (a.test_loss, a.test_accuracy_std) == (b.test_loss, b.test_accuracy_std)
    accs = [r.test_accuracy for r in a.per_seed]
    assert accs[0] != accs[1]  # two seeds, two different runs
    assert a.test_accuracy == pytest.approx(statistics.mean(accs)) and a.test_accuracy > 0.8
    assert a.test_accuracy_std == pytest.approx(statistics.stdev(accs))  # sample std, ddof=1
    losses = [r.test_loss for r in a.per_seed]
    assert a.test_loss_std == pytest.approx(statistics.stdev(losses))
    assert a.test_metric is None


def test_bad_arguments(digits: fmd.tasks.Digits) -> None:
    with pytest.raises(ValueError, match="`seeds` must be a non-empty"):
        fmd.evaluate_schedule(digits, {"lr": [0.1]}, seeds=())
    with pytest.raises(ValueError, match="`seeds` must be distinct"):
        fmd.evaluate_schedule(digits, {"lr": [0.1]}, seeds=(1, 1))
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        fmd.evaluate_schedule(digits, {"lr": [0.1]}, steps=0)
    with pytest.raises(ValueError, match="at most steps=2 windows"):
        fmd.evaluate_schedule(digits, {"lr": [0.1] * 3}, steps=2)
    with pytest.raises(ValueError, match="not a hyperparameter"):
        fmd.evaluate_schedule(digits, {"beta1": [0.9]})


def test_task_without_test_split_is_refused() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    task = fmd.tasks.Custom(model=torch.nn.Linear(4, 2), train=(x, y), steps=5, batch_size=8)
    with pytest.raises(ValueError, match="has no test split"):
        fmd.evaluate_schedule(task, {"lr": [0.1]})


@pytest.mark.slow
@pytest.mark.skipif(
    not _vision.FASHION_MNIST_OFFLINE.is_dir(), reason="apt-get install dataset-fashion-mnist"
)
def test_fashion_mlp_cosine_reaches_85_percent() -> None:
    """The anchor of benchmarks/fashion_cosine.py: 2,000 steps at batch 128, cosine lr."""
    task = fmd.tasks.FashionMNIST(model="mlp", steps=2000, batch_size=128)
    sched = {"lr": fmd.baselines.cosine(0.05, 10), "momentum": [0.9], "weight_decay": [0.0]}
    res = fmd.evaluate_schedule(task, sched, seeds=(0,))
    assert res.test_accuracy >= 0.85


def test_evaluate_takes_a_family_study_s_params_and_per_layer_groups() -> None:
    from optuna_fmd.space import Constant, Cosine

    task = fmd.tasks.Digits(steps=30, batch_size=32)
    space = fmd.ScheduleSpace(
        {"lr": Cosine(windows=3, init=0.1), "momentum": Constant(0.0, 0.99, log=False, init=0.9)}
    )
    params = space.initial_params()
    by_params = fmd.evaluate_schedule(task, params, seeds=(0,), space=space)
    by_windows = fmd.evaluate_schedule(task, space.from_params(params), seeds=(0,))
    assert by_params.test_loss == by_windows.test_loss
    names = [n for n, _ in task.make_model(0).named_parameters()]
    head = names[-1].rsplit(".", 1)[0] + ".*"
    same = fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=1, low=1e-3, high=1.0, log=True, init=0.1),
            "head": fmd.Schedule(windows=1, low=1e-3, high=1.0, log=True, hyper="lr", params=head),
        }
    )
    flat = fmd.evaluate_schedule(task, {"lr": [0.1]}, seeds=(0,))
    grouped = fmd.evaluate_schedule(task, {"lr": [0.1], "head": [0.1]}, seeds=(0,), space=same)
    frozen = fmd.evaluate_schedule(task, {"lr": [0.1], "head": [0.0]}, seeds=(0,), space=same)
    assert grouped.test_loss == flat.test_loss
    assert frozen.test_loss != flat.test_loss


def test_a_group_schedule_without_its_space_says_to_pass_the_space() -> None:
    task = fmd.tasks.Digits(steps=10, batch_size=32)
    space = fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=1, low=1e-3, high=1.0, log=True, init=0.1),
            "lr_head": fmd.Schedule(
                windows=1, low=1e-3, high=1.0, log=True, init=0.01, hyper="lr", params="3.*"
            ),
        }
    )
    schedules = space.from_params(space.initial_params())
    with pytest.raises(ValueError, match=r"`lr_head` is not a hyperparameter.*space=space"):
        fmd.evaluate_schedule(task, schedules, seeds=(0,))
    with pytest.raises(ValueError, match=r"groups=space\.groups\(\)"):
        fmd.run_episode(task, schedules)
    res = fmd.evaluate_schedule(task, schedules, seeds=(0,), space=space)  # as the hint says
    assert res.steps == 10

"""Anchors outside the engine: a PyTorch loop over the task's own episode (Prodigy)."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from optuna_fmd import compare
from optuna_fmd.compare import _methods, _retrain
from optuna_fmd.compare._torch_loop import TORCH_OPTIMIZERS, torch_episode
from optuna_fmd.episode import run_episode
from optuna_fmd.evaluation import evaluate_schedule
from optuna_fmd.tasks import Digits


@pytest.fixture(scope="module")
def digits() -> Digits:
    task = Digits(model="mlp-32-32-32", steps=40, batch_size=32)
    task.data()
    return task


def _sgd(params, hypers):  # type: ignore[no-untyped-def]
    return torch.optim.SGD(
        params, lr=hypers["lr"], momentum=hypers["momentum"], weight_decay=hypers["weight_decay"]
    )


def test_the_loop_trains_and_scores_the_engines_episode(digits: Digits) -> None:
    """With ``torch.optim.SGD`` the loop is the engine's plain SGD episode: the same split,
    minibatches, initial weights and validation loss (float32 rounding apart), and the same
    final retraining on train+val scored on the test set."""
    hypers = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    schedule = {h: [v] for h, v in hypers.items()}
    for seed in (0, 3):
        ours = torch_episode(digits, _sgd, hypers, seed=seed)
        engine = run_episode(digits, schedule, seed=seed, hypergradient=False)
        assert not ours.diverged and ours.loss == pytest.approx(engine.val_loss, rel=1e-4)
        assert ours.accuracy == pytest.approx(float(engine.val_accuracy), abs=1e-9)
        final = torch_episode(digits, _sgd, hypers, seed=seed, final=True)
        test = evaluate_schedule(digits, schedule, seeds=(seed,))
        assert final.loss == pytest.approx(test.test_loss, rel=1e-4)
        assert final.accuracy == pytest.approx(test.test_accuracy, abs=1e-9)
    other = torch_episode(digits, _sgd, hypers, seed=1)
    assert other.loss != torch_episode(digits, _sgd, hypers, seed=0).loss


def test_a_diverged_loop_has_no_figure(digits: Digits) -> None:
    out = torch_episode(digits, _sgd, {"lr": 1e12, "momentum": 0.9, "weight_decay": 0.0}, seed=0)
    assert out.diverged and math.isnan(out.loss) and math.isnan(out.accuracy)


def test_an_imbalanced_task_is_refused_before_training() -> None:
    task = Digits(steps=5, batch_size=16, imbalance=2.0)
    with pytest.raises(ValueError, match="imbalanced"):
        torch_episode(task, _sgd, {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}, seed=0)


def test_the_prodigy_anchor_runs_its_two_weight_decays_and_is_scored_by_the_loop(
    digits: Digits,
) -> None:
    pytest.importorskip("prodigyopt")
    st = _methods.open_study(
        compare.METHODS["prodigy"],
        digits,
        compare.TASKS["digits-sgd"].make_space(),
        seed=0,
        grid=(1.0,),
        storage=optuna.storages.InMemoryStorage(),
        name="prodigy",
    )
    assert st.optimizer == "prodigy" and st.max_trials == 2
    values = []
    while not st.exhausted():
        trial = st.study.ask()
        value = st.objective(trial)
        st.study.tell(trial, value)
        values.append((dict(trial.params), value))
    assert [p for p, _ in values] == [
        {"lr": 1.0, "weight_decay": 0.0},
        {"lr": 1.0, "weight_decay": 5e-4},
    ]
    assert all(math.isfinite(v) and v < math.log(10) for _, v in values)
    hypers = values[0][0]
    direct = torch_episode(digits, TORCH_OPTIMIZERS["prodigy"], hypers, seed=0)
    assert values[0][1] == direct.loss  # the objective is the loop on the unit's seed
    schedule = st.schedule_of(hypers)
    assert schedule == {"lr": [1.0], "weight_decay": [0.0]}
    figures = _retrain.fresh_seed_figures(digits, schedule, (5,), optimizer="prodigy")
    assert figures["fresh_vals"] == [
        torch_episode(digits, TORCH_OPTIMIZERS["prodigy"], hypers, seed=5).loss
    ]
    assert figures["test_accuracy"] is not None and figures["dead_fresh"] == 0

"""Anchors whose optimiser the engine does not have (Prodigy): an idiomatic PyTorch loop over
the task's own episode, so that they are searched and scored like every compared method.

The loop trains ``task.make_model(seed)`` on the minibatches of :func:`~optuna_fmd.episode.
build_episode` (the same split, order and initial weights as a plain episode of the engine)
with a ``torch.optim`` optimiser, ``model(x)``, ``loss.backward()``, ``opt.step()``, the task's
gradient clipping, and scores the validation split as the engine does (the mean loss over
examples, the accuracy), or, for a final evaluation, retrains on train+val and scores the test
set (:func:`~optuna_fmd.evaluation.build_final_training`).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import optuna
import torch

from ..episode import build_episode
from ..evaluation import build_final_training
from ..tasks import Task

__all__ = ["TORCH_OPTIMIZERS", "TorchObjective", "TorchResult", "torch_episode"]

#: Builds a ``torch.optim`` optimiser over a model's parameters from the anchor's hypers.
Factory = Callable[[Iterable[torch.nn.Parameter], Mapping[str, float]], torch.optim.Optimizer]


def _prodigy(
    params: Iterable[torch.nn.Parameter], hypers: Mapping[str, float]
) -> torch.optim.Optimizer:
    try:
        from prodigyopt import Prodigy
    except ImportError as err:  # an optional benchmark extra
        raise ImportError(
            "the `prodigy` anchor needs the prodigyopt package: pip install 'optuna-fmd[anchors]'."
        ) from err
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its weight-decay mode
        return Prodigy(params, lr=hypers["lr"], weight_decay=hypers.get("weight_decay", 0.0))


#: The anchors' optimisers outside the engine, by name; every other hyper keeps its package's
#: default.
TORCH_OPTIMIZERS: dict[str, Factory] = {"prodigy": _prodigy}


class TorchResult(NamedTuple):
    """A torch loop's figures: the scored split's mean loss and accuracy (``nan`` when the
    training diverged, ``diverged`` then True)."""

    loss: float
    accuracy: float
    diverged: bool


def torch_episode(
    task: Task,
    factory: Factory,
    hypers: Mapping[str, float],
    *,
    seed: int,
    final: bool = False,
) -> TorchResult:
    """Train ``task`` for ``task.steps`` steps with ``factory(model.parameters(), hypers)``.

    Args:
        task: The training problem; an imbalanced one is refused (its balanced validation loss
            is the engine's alone).
        factory: The optimiser, e.g. ``TORCH_OPTIMIZERS["prodigy"]``.
        hypers: Its hyperparameters, constant over the episode.
        seed: Seeds the split, the minibatch order and the initial weights, as in
            :func:`~optuna_fmd.run_episode`.
        final: Retrain on train+val and score the test set instead of the validation split.
    """
    if task.imbalance is not None:
        raise ValueError(
            "a torch-loop anchor scores the plain validation loss, but this task is imbalanced "
            f"(imbalance={task.imbalance!r}), which the engine scores balanced; use an engine "
            "optimiser."
        )
    build = build_final_training if final else build_episode
    problem = build(task, {}, seed=seed)[0]
    model = task.make_model(seed).train()
    loss_fn = task.make_loss()
    opt = factory(model.parameters(), hypers)
    for t in range(task.steps):
        x, y = problem.batch_at(t)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            return TorchResult(math.nan, math.nan, True)
        loss.backward()
        if task.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), task.grad_clip)
        opt.step()
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    with torch.no_grad():
        for x, y in problem.val_batches:
            out = model(x)
            loss_sum += float(loss_fn(out, y)) * y.shape[0]
            correct += int((out.argmax(dim=1) == y).sum())
            total += y.shape[0]
    value = loss_sum / total
    if not math.isfinite(value):
        return TorchResult(math.nan, math.nan, True)
    return TorchResult(value, correct / total, False)


class TorchObjective:
    """Suggest an anchor's constant hypers within ``bounds`` (``{name: (low, high, log)}``),
    train a :func:`torch_episode` with the optimiser named ``optimizer``; the value is the
    validation loss (``inf`` when the training diverged, as for the engine's objectives)."""

    def __init__(
        self,
        task: Task,
        optimizer: str,
        bounds: Mapping[str, tuple[float, float, bool]],
        *,
        seed: int = 0,
    ) -> None:
        self.task, self.optimizer, self.bounds, self.seed = task, optimizer, dict(bounds), seed

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        hypers = {
            n: float(trial.suggest_float(n, lo, hi, log=log))
            for n, (lo, hi, log) in self.bounds.items()
        }
        factory = TORCH_OPTIMIZERS[self.optimizer]
        result = torch_episode(self.task, factory, hypers, seed=self.seed)
        trial.set_user_attr("steps", self.task.steps)
        trial.set_user_attr("diverged", result.diverged)
        return math.inf if result.diverged else result.loss

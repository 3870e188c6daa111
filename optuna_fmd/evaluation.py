"""The paper's final evaluation: retrain a schedule from scratch on train+val, score on test."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import optional_positive_int
from .engine import HyperTable, InnerProblem, run_plain
from .episode import Groups, check_schedules, check_seed, class_accuracy, make_problem
from .space import ScheduleSpace
from .tasks import Task

__all__ = ["EvaluationResult", "SeedEvaluation", "evaluate_schedule"]


@dataclass(frozen=True)
class SeedEvaluation:
    """One retraining run of :func:`evaluate_schedule`.

    Attributes:
        seed: Seeds initial weights, minibatch order and dropout.
        test_loss: Mean test loss after the last step (``inf`` if training diverged).
        test_accuracy: Test accuracy (``nan`` when the targets are not class labels).
        test_metric: The task's ``metric`` on the test set, if it defines one.
        train_loss: Training loss of the last step.
        steps: Steps run (fewer than asked if training diverged).
        diverged: Whether the training loss became NaN or infinite.
        seconds: Wall-clock seconds of the run.
        test_class_accuracy: Test accuracy of each class where classes matter (as
            :attr:`~optuna_fmd.EpisodeResult.val_class_accuracy`), else ``None``.
    """

    seed: int
    test_loss: float
    test_accuracy: float
    test_metric: float | None
    train_loss: float
    steps: int
    diverged: bool
    seconds: float
    test_class_accuracy: tuple[float, ...] | None = None


@dataclass(frozen=True)
class EvaluationResult:
    """Test figures of a schedule retrained from scratch, mean and std over seeds.

    Standard deviations are the sample std over seeds (``ddof=1``; 0 for a single seed).

    Attributes:
        test_accuracy: Mean test accuracy.
        test_accuracy_std: Its std over seeds.
        test_loss: Mean test loss (``inf`` if any seed diverged).
        test_loss_std: Its std over seeds.
        per_seed: One :class:`SeedEvaluation` per seed, in the order given.
        steps: The training horizon used.
        test_metric: Mean of the task's ``metric`` (``None`` when it defines none).
        test_metric_std: Its std over seeds.
        test_class_accuracy: Mean over seeds of each class's test accuracy, where classes
            matter (an imbalanced task: ``test_accuracy`` is then their mean, the balanced
            accuracy), else ``None``.
    """

    test_accuracy: float
    test_accuracy_std: float
    test_loss: float
    test_loss_std: float
    per_seed: tuple[SeedEvaluation, ...]
    steps: int
    test_metric: float | None = None
    test_metric_std: float | None = None
    test_class_accuracy: tuple[float, ...] | None = None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for one value); NaN/inf propagate."""
    if any(math.isnan(v) for v in values):
        return float("nan"), float("nan")
    if any(math.isinf(v) for v in values):
        return float("inf"), float("nan")
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def _check_seeds(seeds: object) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError(f"`seeds` must be a non-empty sequence of ints, but got {seeds!r}.")
    out = [check_seed(s) for s in seeds]
    if len(set(out)) != len(out):
        raise ValueError(f"`seeds` must be distinct, but got {list(seeds)!r}.")
    return out


def build_final_training(
    task: Task,
    schedules: Mapping[str, Sequence[float]],
    *,
    seed: int = 0,
    steps: int | None = None,
    groups: Groups | None = None,
) -> tuple[InnerProblem, HyperTable, list[Tensor]]:
    """The engine's view of a final-evaluation run: train on the whole training split (no
    validation held out; on an imbalanced task, its long-tailed training part, so that the
    imbalance stays what the schedule was tuned for) for ``steps`` (default ``task.steps``); the
    problem's validation batches are the test set.
    """
    seed = check_seed(seed)
    checked = check_schedules(task, schedules, groups)
    horizon = task.steps if steps is None else steps
    data = task.data()
    if data.test_x is None or data.test_y is None:
        raise ValueError(
            f"`task` ({type(task).__name__}) has no test split, so it cannot be evaluated; "
            "give the task test data (e.g. Custom(test=(x, y)))."
        )
    train = (data.train_x, data.train_y)
    if task.imbalance is not None:
        idx = task.split(seed)[0].to(data.train_x.device)
        train = (data.train_x[idx], data.train_y[idx])
    return make_problem(
        task,
        checked,
        train,
        (data.test_x, data.test_y),
        seed=seed,
        steps=horizon,
        groups=groups,
    )


def _metric(task: Task, problem: InnerProblem, state: Sequence[Tensor]) -> float | None:
    metric = getattr(task, "metric", None)
    if metric is None:
        return None
    params, stats = problem.evaluated(state)
    with torch.no_grad():
        outs = [problem.model.eval_output(params, stats, x) for x, _ in problem.val_batches]
    target = torch.cat([y for _, y in problem.val_batches])
    return float(metric(torch.cat(outs), target))


def evaluate_schedule(
    task: Task,
    schedules: Mapping[str, Sequence[float]],
    seeds: Sequence[int] = (0, 1, 2),
    steps: int | None = None,
    *,
    space: ScheduleSpace | None = None,
    groups: Groups | None = None,
) -> EvaluationResult:
    """Retrain ``schedules`` from scratch on train+val and report test accuracy and loss
    (balanced, and per class, on an imbalanced task).

    The paper's final evaluation (Micaelli & Storkey, NeurIPS 2021): for each seed, fresh weights
    are trained with the task's inner optimiser on the whole training split (the validation part
    included) and scored on the untouched test set. With ``steps`` longer than ``task.steps`` the
    K-window schedules stretch over the longer horizon (step t of T uses window
    ``floor(t * K / T)``). No hypergradient is computed; the same functional training step as
    :func:`optuna_fmd.run_episode` is used.

    Args:
        task: The training problem; it must have a test split.
        schedules: ``{hyper: [K window values]}``; hyperparameters not given keep the task's
            fixed values.
        seeds: One retraining run per seed (initial weights, minibatch order, dropout).
        steps: Training horizon (default ``task.steps``).
        space: The study's space: ``schedules`` may then be a trial's params (e.g.
            ``study.best_params``, window values or family parameters), and the space's
            per-layer groups apply.
        groups: Per-layer groups without a space, as for :func:`optuna_fmd.run_episode`
            (``{name: (hyper, parameter patterns)}``).

    Returns:
        An :class:`EvaluationResult` (mean and std over seeds, and each seed's figures).

    Example:
        >>> import optuna_fmd as fmd
        >>> task = fmd.tasks.Digits(steps=50, batch_size=32)
        >>> res = fmd.evaluate_schedule(task, {"lr": fmd.baselines.cosine(0.1, 5)}, seeds=(0,))
        >>> res.test_accuracy > 0.5
        True
    """
    if not isinstance(task, Task):
        raise TypeError(f"`task` must be an optuna_fmd.tasks.Task, but got {task!r}.")
    seed_list = _check_seeds(seeds)
    optional_positive_int("steps", steps)
    horizon = task.steps if steps is None else steps
    if space is not None and groups is not None:
        raise ValueError("give `space` or `groups`, not both: a space holds its groups.")
    if space is not None:
        groups = space.groups() or None
        if set(schedules) == set(space.param_names()):
            schedules = space.from_params(schedules)  # type: ignore[arg-type]
    checked = check_schedules(task, schedules, groups)
    for name, vals in checked.items():
        if len(vals) > horizon:
            raise ValueError(
                f"schedule `{name}` must have at most steps={horizon} windows, "
                f"but got {len(vals)}."
            )
    data = task.data()
    if data.test_x is None or data.test_y is None:
        raise ValueError(
            f"`task` ({type(task).__name__}) has no test split, so it cannot be evaluated; "
            "give the task test data (e.g. Custom(test=(x, y)))."
        )
    runs = [_retrain(task, checked, seed, horizon, groups) for seed in seed_list]
    return _summary(task, runs, horizon)


def _retrain(
    task: Task,
    checked: Mapping[str, list[float]],
    seed: int,
    horizon: int,
    groups: Groups | None,
) -> SeedEvaluation:
    """One seed of :func:`evaluate_schedule`: train from scratch, score on the test set."""
    start = time.perf_counter()
    problem, table, state0 = build_final_training(
        task, checked, seed=seed, steps=horizon, groups=groups
    )
    with torch.random.fork_rng(devices=[]):
        result = run_plain(problem, table, state0)
    return SeedEvaluation(
        seed=seed,
        test_loss=result.val_loss if not result.diverged else float("inf"),
        test_accuracy=result.val_accuracy,
        test_metric=None if result.diverged else _metric(task, problem, result.state),
        train_loss=result.train_loss,
        steps=result.steps_done,
        diverged=result.diverged,
        seconds=time.perf_counter() - start,
        test_class_accuracy=None if result.diverged else class_accuracy(problem, result.state),
    )


def _summary(task: Task, runs: list[SeedEvaluation], horizon: int) -> EvaluationResult:
    """Means and stds over the seeds' runs (per class too, where each run has them)."""
    acc, acc_std = _mean_std([r.test_accuracy for r in runs])
    loss, loss_std = _mean_std([r.test_loss for r in runs])
    metric_mean = metric_std = None
    if getattr(task, "metric", None) is not None:
        vals = [r.test_metric if r.test_metric is not None else float("nan") for r in runs]
        metric_mean, metric_std = _mean_std(vals)
    per_class_mean = None
    if all(r.test_class_accuracy is not None for r in runs):
        columns = zip(*(r.test_class_accuracy or () for r in runs), strict=True)
        per_class_mean = tuple(_mean_std(list(c))[0] for c in columns)
    return EvaluationResult(
        test_accuracy=acc,
        test_accuracy_std=acc_std,
        test_loss=loss,
        test_loss_std=loss_std,
        per_seed=tuple(runs),
        steps=horizon,
        test_metric=metric_mean,
        test_metric_std=metric_std,
        test_class_accuracy=per_class_mean,
    )

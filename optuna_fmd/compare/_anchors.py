"""What users run instead of tuning, as compared methods: an optimiser at its package's
defaults, or at a few lrs (and weight decays) around them, each a plain episode on the task's
own data, model, horizon, split and minibatches, picked on the unit's seed. The optimiser is
the engine's (:func:`anchor_task`) or, outside it (Prodigy), a PyTorch loop
(:mod:`optuna_fmd.compare._torch_loop`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna

from ..baselines import cosine
from ..engine import make_optimizer
from ..tasks import Task
from ._objectives import FamilyObjective, Schedules
from ._torch_loop import TORCH_OPTIMIZERS, TorchObjective

__all__ = ["ANCHORS", "GRID", "Anchor", "anchor_task", "anchor_trials"]

#: An lr grid around an optimiser's default: the default times these factors.
GRID = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Anchor:
    """What a user runs instead of tuning: an inner optimiser at its package's defaults, at a
    few lrs around its default lr (every layer the same lr), each a plain episode picked on
    the unit's seed.

    Attributes:
        optimizer: The engine's optimiser (:data:`optuna_fmd.engine.OPTIMIZERS`) the anchor
            trains with, whatever the task's own; the task's fixed values of the hypers that
            optimiser has are kept (a schedule-free warm-up), the others are its defaults. Or
            one of :data:`~optuna_fmd.compare._torch_loop.TORCH_OPTIMIZERS`, trained by a
            PyTorch loop on the same episode.
        factors: The lrs as factors of ``lr``.
        lr: The lr the factors multiply (``None``: the optimiser's default lr).
        warmup: With a value, the lr follows a cosine with this warm-up fraction, ending at 0,
            one value per step (as a per-step scheduler sets it), instead of a constant.
        weight_decays: With values, every lr at each of these weight decays.
    """

    optimizer: str
    factors: tuple[float, ...]
    lr: float | None = None
    warmup: float | None = None
    weight_decays: tuple[float, ...] | None = None


#: The anchors by method name: schedule-free AdamW at its defaults (lr 0.0025) and on a 5-point
#: grid, schedule-free SGD (momentum 0.9, lr 1.0) on the grid, and AdamW with a 5% warm-up and
#: a cosine on the same grid as schedule-free AdamW's.
ANCHORS: dict[str, Anchor] = {
    "sf-adamw": Anchor("sf-adamw", (1.0,)),
    "sf-adamw-grid": Anchor("sf-adamw", GRID),
    "sf-sgd-grid": Anchor("sf-sgd", GRID),
    "adamw-cosine-grid": Anchor("adamw", GRID, lr=0.0025, warmup=0.05),
    "prodigy": Anchor("prodigy", (1.0,), lr=1.0, weight_decays=(0.0, 5e-4)),
}


def anchor_task(task: Task, optimizer: str | None) -> Task:
    """``task`` trained with ``optimizer`` (``None``, its own or one outside the engine:
    ``task`` itself): the same data, model, horizon, split and minibatches; of the task's
    fixed hypers, those the optimiser has."""
    if optimizer is None or optimizer == task.optimizer or optimizer in TORCH_OPTIMIZERS:
        return task
    own = make_optimizer(optimizer).hypers
    out = dataclasses.replace(
        task, optimizer=optimizer, hypers={k: v for k, v in task.hypers.items() if k in own}
    )
    if "data" in task._cache:  # the same tensors: loaded once
        out._cache["data"] = task._cache["data"]
    return out


def anchor_trials(
    anchor: Anchor, task: Task, seed: int
) -> tuple[
    list[dict[str, float]], Callable[[optuna.trial.Trial], float], Callable[..., Schedules]
]:
    """``anchor``'s queued trials, ``{"lr": lr}`` for each of its lrs (with its weight
    decays, each lr at each), the objective of a plain episode of its optimiser at
    each (:func:`anchor_task`, or a PyTorch loop), and the schedules a trial stands for: one lr
    for every layer, constant or on its cosine."""
    trained = anchor_task(task, anchor.optimizer)
    lr = anchor.lr if anchor.lr is not None else trained.inner_optimizer().defaults["lr"]
    lrs = [lr * f for f in anchor.factors]
    queued = [{"lr": lr} for lr in lrs]
    bounds = {"lr": (min(lrs), max(lrs), True)}
    if anchor.weight_decays is not None:
        wds = anchor.weight_decays
        queued = [{**q, "weight_decay": wd} for q in queued for wd in wds]
        bounds["weight_decay"] = (min(wds), max(wds), False)

    def to_schedules(p: Mapping[str, float]) -> Schedules:
        if anchor.warmup is None:
            out = {"lr": [p["lr"]]}
        else:
            out = {"lr": cosine(p["lr"], trained.steps, warmup=anchor.warmup)}
        if "weight_decay" in p:
            out["weight_decay"] = [p["weight_decay"]]
        return out

    if anchor.optimizer in TORCH_OPTIMIZERS:
        objective: Callable[[optuna.trial.Trial], float] = TorchObjective(
            trained, anchor.optimizer, bounds, seed=seed
        )
    else:
        objective = FamilyObjective(trained, bounds, to_schedules, seed=seed)
    return queued, objective, to_schedules

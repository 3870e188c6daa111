"""Scoring a unit's best schedules on seeds the search never saw: the fresh seeds, each
schedule's plain episodes scored on their validation splits and its retrainings on train+val
scored on the test set (an anchor's with its own optimiser), written into the unit's record."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..episode import run_episode
from ..evaluation import evaluate_schedule
from ..tasks import Task
from . import _stats
from ._anchors import anchor_task
from ._config import TASKS, CompareConfig
from ._objectives import Schedules
from ._torch_loop import TORCH_OPTIMIZERS, torch_episode

__all__ = ["fresh_seed_figures", "retrain_seeds", "retrain_unit"]

#: Distance between a unit's successive fresh seeds (see :func:`retrain_seeds`).
RETRAIN_STRIDE = 1000


def retrain_seeds(cfg: CompareConfig, seed: int) -> tuple[int, ...]:
    """The fresh seeds a unit's best schedules are scored on: ``retrain_offset + seed``, then
    steps of :data:`RETRAIN_STRIDE` (so a one-seed protocol's seed is the first of these)."""
    return tuple(cfg.retrain_offset + seed + RETRAIN_STRIDE * j for j in range(cfg.retrain_seeds))


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def fresh_seed_figures(
    task: Task,
    schedule: Schedules,
    seeds: Sequence[int],
    groups: Mapping[str, tuple[str, tuple[str, ...]]] | None = None,
    *,
    optimizer: str | None = None,
) -> dict[str, Any]:
    """How one schedule does on seeds the search never saw (``groups``: the per-layer groups
    of a per-layer space; those the schedule names apply; ``optimizer``: an anchor's optimiser
    (:func:`~optuna_fmd.compare._anchors.anchor_task`; one outside the engine is trained by
    :func:`~optuna_fmd.compare._torch_loop.torch_episode` with the schedule's constant values).

    For each seed, a plain episode on the training split scored on that seed's validation split
    (``fresh_vals``: what a choice between methods may use) and a retraining on train+val scored
    on the test set (``test_accuracies``, ``test_losses``: reported, never chosen on). The means
    are ``None`` where a seed diverged; ``dead_fresh`` and ``dead_retrain`` count the runs that
    diverged or ended at chance (:func:`_stats.dead`).
    """
    fresh: list[float | None] = []
    accs: list[float | None] = []
    losses: list[float | None] = []
    if optimizer in TORCH_OPTIMIZERS:
        factory = TORCH_OPTIMIZERS[optimizer]
        hypers = {h: v[0] for h, v in schedule.items()}
        for s in seeds:
            t = torch_episode(task, factory, hypers, seed=s)
            fresh.append(None if t.diverged else _finite(t.loss))
            e = torch_episode(task, factory, hypers, seed=s, final=True)
            accs.append(None if e.diverged else _finite(e.accuracy))
            losses.append(None if e.diverged else _finite(e.loss))
    else:
        task = anchor_task(task, optimizer)
        named = {n: g for n, g in (groups or {}).items() if n in schedule} or None
        for s in seeds:
            r = run_episode(task, schedule, seed=s, hypergradient=False, groups=named)
            fresh.append(None if r.diverged else _finite(r.val_loss))
        res = evaluate_schedule(task, schedule, seeds=tuple(seeds), groups=named)
        # a diverged retraining still predicts (at chance): no figure, like a diverged loss
        accs = [None if e.diverged else _finite(e.test_accuracy) for e in res.per_seed]
        losses = [None if e.diverged else _finite(e.test_loss) for e in res.per_seed]

    def mean(xs: list[float | None]) -> float | None:
        finite = [x for x in xs if x is not None]
        return math.fsum(finite) / len(xs) if len(finite) == len(xs) else None

    chance = math.log(task.data().n_classes)
    return {
        "retrain_seeds": list(seeds),
        "dead_fresh": _stats.dead(fresh, chance),
        "dead_retrain": _stats.dead(losses, chance),
        "fresh_val": mean(fresh),
        "fresh_vals": fresh,
        "test_accuracy": mean(accs),
        "test_accuracies": accs,
        "test_loss": mean(losses),
        "test_losses": losses,
    }


def retrain_unit(cfg: CompareConfig, unit: dict[str, Any], task: Task | None = None) -> None:
    """Score every method's best schedule of ``unit`` (each budget's) on the unit's fresh
    seeds, in place; a schedule that is best at several budgets is scored once."""
    if task is None:
        task = TASKS[unit["task"]].make_task(cfg.device)
    groups = TASKS[unit["task"]].groups(task)
    seeds = retrain_seeds(cfg, int(unit["seed"]))
    done: dict[str, dict[str, Any]] = {}
    for record in unit["methods"].values():
        for best in record["best"].values():
            if best is None:
                continue
            key = json.dumps([best["schedule"], best.get("optimizer")], sort_keys=True)
            if key not in done:
                done[key] = fresh_seed_figures(
                    task, best["schedule"], seeds, groups, optimizer=best.get("optimizer")
                )
            best.update(done[key])

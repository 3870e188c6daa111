"""The objectives of the comparison's own families and anchors: a plain episode of the
schedules a trial's few parameters stand for, scored like :class:`~optuna_fmd.
HypergradientObjective` with ``hypergradient=False``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import optuna

from ..engine import EngineOptions, PlainOptions
from ..episode import run_episode
from ..tasks import Task

__all__ = ["FamilyObjective", "Schedules"]

Schedules = dict[str, list[float]]


class FamilyObjective:
    """Suggest a family's few parameters, run a plain episode of the schedules they stand for.

    The value is the validation loss, as for
    :class:`~optuna_fmd.HypergradientObjective` with ``hypergradient=False`` on the window
    space. With ``rungs``, the validation loss after every ``steps // rungs`` steps is reported
    to the trial and a pruned trial stops there (Optuna's pruners, e.g. ``HyperbandPruner``).
    """

    def __init__(
        self,
        task: Task,
        params: Mapping[str, tuple[float, float, bool]],
        to_schedules: Callable[[Mapping[str, float]], Schedules],
        *,
        seed: int = 0,
        rungs: int | None = None,
        groups: Mapping[str, tuple[str, tuple[str, ...]]] | None = None,
    ) -> None:
        self.task = task
        self.params = dict(params)
        self.to_schedules = to_schedules
        self.seed = seed
        self.rungs = rungs
        self.groups = dict(groups or {})

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        values = {
            n: float(trial.suggest_float(n, lo, hi, log=log))
            for n, (lo, hi, log) in self.params.items()
        }
        schedules = self.to_schedules(values)
        options = None
        if self.rungs:

            def report(step: int, loss: float) -> None:
                rung = step // every
                if rung >= rungs:  # T not a multiple of the rungs: no report past the last
                    return
                trial.report(loss if math.isfinite(loss) else math.inf, rung)
                if trial.should_prune():
                    trial.set_user_attr("steps", step)
                    raise optuna.TrialPruned(f"pruned at rung {rung} (step {step})")

            rungs = self.rungs
            every = max(1, self.task.steps // rungs)
            options = EngineOptions(plain=PlainOptions(validate_every=every, on_validation=report))
        groups = {n: g for n, g in self.groups.items() if n in schedules} or None
        result = run_episode(
            self.task,
            schedules,
            seed=self.seed,
            hypergradient=False,
            options=options,
            groups=groups,
        )
        diverged = bool(result.diverged) or not math.isfinite(result.val_loss)
        trial.set_user_attr("steps", int(result.steps))
        trial.set_user_attr("diverged", diverged)
        return math.inf if diverged else float(result.val_loss)

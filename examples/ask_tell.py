"""FMDSampler with Optuna's ask-and-tell interface and a hand-written training step.

What :class:`optuna_fmd.HypergradientObjective` does, spelled out: suggest every param of the
space (here a cosine lr family: ``lr_peak``, ``lr_warmup``, ``lr_final``), run the episode of the
window schedules they stand for, chain the window hypergradient to the params and store it
under ``user_attrs["hypergradient"]``, tell the validation loss. The sampler's state on the trial
says whether it needs the hypergradient at all (its plain probes do not).
FDS outer loop: Micaelli & Storkey, NeurIPS 2021.

    python examples/ask_tell.py
    OPTUNA_FMD_TINY=1 python examples/ask_tell.py   # a few seconds (smoke test)
"""

from __future__ import annotations

import os

import optuna

import optuna_fmd as fmd
from optuna_fmd.space import Cosine

TINY = os.environ.get("OPTUNA_FMD_TINY") == "1"


def main() -> None:
    space = fmd.ScheduleSpace({"lr": Cosine(1e-3, 1.0, init=1e-2, windows=2 if TINY else 4)})
    task = fmd.tasks.Digits(model="mlp", steps=30 if TINY else 300, batch_size=32)
    study = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0))
    for _ in range(3 if TINY else 16):
        trial = study.ask()
        params = {
            name: trial.suggest_float(name, low, high, log=log)
            for name, (low, high, log) in space.distributions().items()
        }
        wants = fmd.FMDSampler.wants_hypergradient(trial)  # after the first suggest
        schedules = space.from_params(params)
        result = fmd.run_episode(task, schedules, seed=0, hypergradient=wants)
        if result.hypergradient is not None and not result.diverged:
            trial.set_user_attr("hypergradient", space.chain(params, result.hypergradient))
        study.tell(trial, result.val_loss)
        print(
            f"trial {trial.number}: lr {[round(v, 4) for v in schedules['lr']]} "
            f"-> validation loss {result.val_loss:.4f}"
        )
    print(f"best: {study.best_value:.4f} with {study.best_params}")


if __name__ == "__main__":
    main()

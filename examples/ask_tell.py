"""FMDSampler with Optuna's ask-and-tell interface and a hand-written training step.

What :class:`optuna_fmd.HypergradientObjective` does, spelled out: suggest one float per window
(``lr_0``, ``lr_1``, ...), run the episode, store the hypergradient under
``user_attrs["hypergradient"]`` keyed by parameter name, tell the validation loss.
FDS outer loop: Micaelli & Storkey, NeurIPS 2021.

    python examples/ask_tell.py
    OPTUNA_FMD_TINY=1 python examples/ask_tell.py   # a few seconds (smoke test)
"""

from __future__ import annotations

import os

import optuna

import optuna_fmd as fmd

TINY = os.environ.get("OPTUNA_FMD_TINY") == "1"


def main() -> None:
    space = fmd.ScheduleSpace(
        {"lr": fmd.Schedule(windows=2 if TINY else 4, low=1e-3, high=1.0, log=True, init=1e-2)}
    )
    task = fmd.tasks.Digits(model="mlp", steps=30 if TINY else 300, batch_size=32)
    study = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0))
    for _ in range(3 if TINY else 10):
        trial = study.ask()
        schedules = {
            name: [
                trial.suggest_float(f"{name}_{k}", s.low, s.high, log=s.log)
                for k in range(s.windows)
            ]
            for name, s in space.items()
        }
        result = fmd.run_episode(task, schedules, seed=0)
        if result.hypergradient is not None and not result.diverged:
            trial.set_user_attr(
                "hypergradient",
                {
                    f"{name}_{k}": g
                    for name, gs in result.hypergradient.items()
                    for k, g in enumerate(gs)
                },
            )
        study.tell(trial, result.val_loss)
        print(
            f"trial {trial.number}: lr {[round(v, 4) for v in schedules['lr']]} "
            f"-> validation loss {result.val_loss:.4f}"
        )
    print(f"best: {study.best_value:.4f} with {study.best_params}")


if __name__ == "__main__":
    main()

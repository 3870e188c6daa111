"""FMD vs TPE on the same schedule space: hypergradient steps against a black-box sampler.

The same :class:`optuna_fmd.HypergradientObjective` serves both: with ``hypergradient=False`` it
trains plainly (cheaper episodes), so TPE gets more trials for the same wall-clock. Both studies
go to one storage so ``optuna-dashboard`` shows them side by side (Micaelli & Storkey,
NeurIPS 2021, compare FDS with black-box HPO the same way).

    python examples/fmd_vs_tpe.py
    OPTUNA_FMD_TINY=1 python examples/fmd_vs_tpe.py   # a few seconds (smoke test)
"""

from __future__ import annotations

import os
import time

import optuna

import optuna_fmd as fmd

TINY = os.environ.get("OPTUNA_FMD_TINY") == "1"
STORAGE = os.environ.get("OPTUNA_FMD_STORAGE", "sqlite:///fmd.db")


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    windows = 2 if TINY else 4
    space = fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=windows, low=1e-3, high=1.0, log=True, init=0.05),
            "momentum": fmd.Schedule(windows=windows, low=0.0, high=0.99, init=0.9),
        }
    )
    task = fmd.tasks.Digits(model="mlp", steps=30 if TINY else 300, batch_size=32)
    runs = {
        "fmd": (fmd.FMDSampler(space, seed=0), True, 3 if TINY else 10),
        "tpe": (optuna.samplers.TPESampler(seed=0), False, 4 if TINY else 40),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for label, (sampler, hypergradient, n_trials) in runs.items():
        study = optuna.create_study(
            storage=STORAGE, study_name=f"digits-{label}-{stamp}", sampler=sampler
        )
        objective = fmd.HypergradientObjective(task, space, hypergradient=hypergradient)
        start = time.perf_counter()
        study.optimize(objective, n_trials=n_trials)
        seconds = time.perf_counter() - start
        print(
            f"{label}: best validation loss {study.best_value:.4f} after {n_trials} trials, "
            f"{seconds:.1f} s"
        )
    print(f"view both: optuna-dashboard {STORAGE}")


if __name__ == "__main__":
    main()
